"""``/v1``: chat completions, completions, models."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.routing import Route

from chatgate.deps import CurrentUser, StateDep
from chatgate.errors import APIError
from chatgate.openai_api.endpoint import RelayEndpoint

router = APIRouter(prefix="/v1", tags=["openai"])

# The relayed routes are raw ASGI (openai_api.endpoint): FastAPI neither parses their
# bodies nor documents them, so their OpenAPI entries are written out here.
router.routes += [
    Route("/v1/chat/completions", RelayEndpoint("v1.chat"), methods=["POST"]),
    Route("/v1/completions", RelayEndpoint("v1.completions"), methods=["POST"]),
]


def _relay_operation(summary: str, required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "additionalProperties": True}
    sse = {"schema": {"type": "string", "description": "SSE events, ending in data: [DONE]"}}
    return {
        "post": {
            "tags": ["openai"],
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "200": {
                    "description": "The answer (JSON), or its stream when `stream` is true",
                    "content": {"application/json": {}, "text/event-stream": sse},
                },
                "default": {"description": "An error: {error: {type, message, code, param}}"},
            },
        }
    }


RELAY_OPENAPI_PATHS = {
    "/v1/chat/completions": _relay_operation("Chat Completions", ["model", "messages"]),
    "/v1/completions": _relay_operation("Completions", ["model", "prompt"]),
}


@router.get("/models")
async def list_models(_identity: CurrentUser, state: StateDep) -> dict[str, Any]:
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": m.id, "object": "model", "created": created, "owned_by": m.owned_by}
            for m in state.registry.models()
        ],
    }


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, _identity: CurrentUser, state: StateDep) -> dict[str, Any]:
    entry = state.registry.lookup(model_id)  # still listed while it is being switched
    if entry.id != model_id and model_id not in entry.aliases:
        raise APIError(404, f"The model '{model_id}' does not exist", "model_not_found")
    return {
        "id": entry.id,
        "object": "model",
        "created": int(time.time()),
        "owned_by": entry.owned_by,
    }

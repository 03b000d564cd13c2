"""``/v1``: chat completions, completions, models."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from starlette.routing import Route

from chatgate.api_route import GatewayRoute
from chatgate.deps import CurrentUser, StateDep
from chatgate.errors import APIError
from chatgate.openai_api.embeddings import EmbeddingsEndpoint
from chatgate.openai_api.embeddings_request import EMBEDDINGS_REQUEST, EMBEDDINGS_RESPONSE
from chatgate.openai_api.endpoint import RelayEndpoint
from chatgate.openai_api.request_schemas import CHAT_REQUEST, COMPLETION_REQUEST
from chatgate.openapi_responses import SIGNED_IN, errors, openapi_errors

router = APIRouter(prefix="/v1", tags=["openai"], responses=SIGNED_IN, route_class=GatewayRoute)

# The relayed routes are raw ASGI (openai_api.endpoint): FastAPI neither parses their
# bodies nor documents them, so their OpenAPI entries are written out here.
router.routes += [
    Route("/v1/chat/completions", RelayEndpoint("v1.chat"), methods=["POST"]),
    Route("/v1/completions", RelayEndpoint("v1.completions"), methods=["POST"]),
    Route("/v1/embeddings", EmbeddingsEndpoint(), methods=["POST"]),
]


def _relay_operation(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
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
                # 400: the body (`param` names the field); 400, 413, 422, 429: the engine
                # refused it (its status and reason are passed on); 404: no such model;
                # 502/504: the engine failed or did not answer.
                **openapi_errors(400, 401, 403, 404, 413, 422, 429, 502, 503, 504),
            },
        }
    }


def _embeddings_operation() -> dict[str, Any]:
    body = {"required": True, "content": {"application/json": {"schema": EMBEDDINGS_REQUEST}}}
    answer = {"content": {"application/json": {"schema": EMBEDDINGS_RESPONSE}}}
    return {
        "post": {
            "tags": ["openai"],
            "summary": "Embeddings",
            "requestBody": body,
            "responses": {
                "200": {"description": "One vector per input", **answer},
                # 400: the body, or a model without embeddings (`param`: model); the rest
                # as for chat completions.
                **openapi_errors(400, 401, 403, 404, 413, 422, 429, 502, 503, 504),
            },
        }
    }


RELAY_OPENAPI_PATHS = {
    "/v1/chat/completions": _relay_operation("Chat Completions", CHAT_REQUEST),
    "/v1/completions": _relay_operation("Completions", COMPLETION_REQUEST),
    "/v1/embeddings": _embeddings_operation(),
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


@router.get("/models/{model_id:path}", responses=errors(404))
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

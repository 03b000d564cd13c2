"""``/v1/responses`` (OpenAI's Responses API): create, retrieve, delete.

The routes are raw ASGI (``responses_api.endpoint``), like the chat-completions relay and
``/v1/messages``; FastAPI does not document them, so they stay out of the gateway's
OpenAPI schema (docs/responses.md describes them).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.routing import Route

from chatgate.responses_api.endpoint import CreateEndpoint, ItemEndpoint

router = APIRouter(tags=["responses"])
router.routes += [
    Route("/v1/responses", CreateEndpoint(), methods=["POST"]),
    Route("/v1/responses/{response_id}", ItemEndpoint(), methods=["GET", "DELETE"]),
]

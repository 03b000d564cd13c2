"""``/v1/messages`` (Anthropic's Messages API) and its ``count_tokens``.

The routes are raw ASGI (``anthropic_api.endpoint``), like the chat-completions relay;
FastAPI does not document them, and their errors are in Anthropic's shape, not the
gateway's, so they stay out of the gateway's OpenAPI schema (docs/api.md lists them).
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.routing import Route

from chatgate.anthropic_api.endpoint import CountTokensEndpoint, MessagesEndpoint

router = APIRouter(tags=["anthropic"])
router.routes += [
    Route("/v1/messages", MessagesEndpoint(), methods=["POST"]),
    Route("/v1/messages/count_tokens", CountTokensEndpoint(), methods=["POST"]),
]

"""``/api/models``: the models the signed-in user may chat with."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chatgate.api_route import GatewayRoute
from chatgate.deps import CurrentUser, StateDep
from chatgate.errors import APIError
from chatgate.openapi_responses import SIGNED_IN

router = APIRouter(tags=["models"], responses=SIGNED_IN, route_class=GatewayRoute)


@router.get("/api/models")
async def list_models(_identity: CurrentUser, state: StateDep) -> dict[str, Any]:
    models = state.registry.chat_models()  # the web chat cannot use embedding-only models
    try:
        # lookup, not resolve: a default model that is being switched is still the default.
        default: str | None = state.registry.lookup(None).id if models else None
    except APIError:  # the default model is disabled
        default = None
    return {"models": [model.public() for model in models], "default": default}

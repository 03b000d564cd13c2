"""``/api/models``: the models the signed-in user may chat with."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from chatgate.deps import CurrentUser, StateDep

router = APIRouter(tags=["models"])


@router.get("/api/models")
async def list_models(_identity: CurrentUser, state: StateDep) -> dict[str, Any]:
    return {
        "models": [model.public() for model in state.registry.models()],
        "default": state.registry.resolve(None).id if state.registry.models() else None,
    }

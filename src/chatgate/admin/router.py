"""``/api/admin/hardware``, ``/api/admin/engines`` and ``/api/admin/models`` (admins only)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query

from chatgate.admin import service
from chatgate.admin.schemas import (
    AdminModel,
    AdminModelList,
    EngineList,
    HardwareOut,
    SwitchOut,
    SwitchState,
)
from chatgate.api_route import GatewayRoute
from chatgate.deps import AdminUser, StateDep
from chatgate.engines.catalog import persist
from chatgate.engines.catalog.compat import CompatReport, detected_hardware, parse_size
from chatgate.engines.catalog.profiles import ProfileError, find_profile
from chatgate.errors import APIError
from chatgate.hardware.gpus import gpu_status
from chatgate.openapi_responses import ADMIN, errors

router = APIRouter(tags=["admin: models"], responses=ADMIN, route_class=GatewayRoute)


@router.get("/api/admin/hardware")
async def hardware(_admin: AdminUser) -> HardwareOut:
    return HardwareOut.model_validate(await asyncio.to_thread(gpu_status))


@router.get("/api/admin/engines")
async def engines(_admin: AdminUser, state: StateDep) -> EngineList:
    return EngineList(engines=service.engine_views(state), pools=service.pool_views(state))


@router.get("/api/admin/models")
async def models(_admin: AdminUser, state: StateDep) -> AdminModelList:
    return await service.model_list(state)


@router.get("/api/admin/models/switch")
async def switch_status(_admin: AdminUser, state: StateDep) -> SwitchState:
    current = state.manager.switch
    return SwitchState(switch=SwitchOut.model_validate(current.public()) if current else None)


@router.post("/api/admin/models/{model_id}/switch", status_code=202, responses=errors(404, 409))
async def switch(model_id: str, _admin: AdminUser, state: StateDep) -> SwitchOut:
    # Any gateway of a fleet: the leader runs it, every gateway drains
    # (engines/runtime/coordinator.py).
    status = await state.manager.request_switch(model_id)
    return SwitchOut.model_validate(status.public())


@router.get("/api/admin/models/{model_id}/check", responses=errors(400, 404))
async def check(
    model_id: str,
    _admin: AdminUser,
    state: StateDep,
    gpus: Annotated[int | None, Query(ge=1, le=64)] = None,
    gpu_memory: Annotated[str | None, Query(max_length=32, examples=["24GiB"])] = None,
    utilization: Annotated[float | None, Query(gt=0, le=1)] = None,
    max_model_len: Annotated[int | None, Query(ge=16)] = None,
) -> CompatReport:
    try:
        profile = find_profile(state.manager.profiles, model_id)
    except ProfileError as exc:
        raise APIError(404, str(exc), "profile_not_found") from exc
    try:
        memory = parse_size(gpu_memory) if gpu_memory else None
    except ValueError as exc:
        raise APIError(400, str(exc), "invalid_value", param="gpu_memory") from exc
    try:
        return await service.check(state, profile, gpus, memory, utilization, max_model_len)
    except ProfileError as exc:
        # The one override the query's bounds cannot judge: a length beyond the profile's
        # context (it depends on the model).
        raise APIError(400, str(exc), "invalid_value", param="max_model_len") from exc


async def _set_enabled(model_id: str, enabled: bool, state: StateDep) -> AdminModel:
    state.manager.set_enabled(model_id, enabled)
    async with state.sessionmaker() as db:
        await persist.save_enabled(db, model_id, enabled)
    if state.fleet is not None:
        state.fleet.publish("model_enabled", model=model_id, enabled=enabled)
    hardware = await asyncio.to_thread(detected_hardware)
    return service.model_view(model_id, state, hardware)


@router.post("/api/admin/models/{model_id}/enable", responses=errors(404, 409))
async def enable(model_id: str, _admin: AdminUser, state: StateDep) -> AdminModel:
    return await _set_enabled(model_id, True, state)


@router.post("/api/admin/models/{model_id}/disable", responses=errors(404, 409))
async def disable(model_id: str, _admin: AdminUser, state: StateDep) -> AdminModel:
    return await _set_enabled(model_id, False, state)

"""Views of models, profiles and engines for admins: registry + profiles + supervisors."""

from __future__ import annotations

import asyncio
from typing import Any

from chatgate.admin.schemas import (
    AdminModel,
    AdminModelList,
    EngineOut,
    HardwareSummary,
    ModelState,
    PoolOut,
)
from chatgate.engines.catalog.compat import (
    CompatReport,
    HardwareSpec,
    check_profile,
    detected_hardware,
)
from chatgate.engines.catalog.profiles import ModelProfile
from chatgate.engines.runtime.manager import EngineManager
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.registry import ModelEntry
from chatgate.state import AppState

_STATES: dict[str, ModelState] = {
    "ready": "ready",
    "starting": "starting",
    "restarting": "starting",
    "failed": "failed",
    "stopped": "stopped",
}


def engine_view(endpoint: Endpoint, model_id: str, manager: EngineManager) -> EngineOut:
    data: dict[str, Any] = endpoint.public()
    supervisor = manager.supervisor(model_id) if endpoint.kind == "managed" else None
    status = supervisor.status() if supervisor is not None else None
    data.update(
        model_id=model_id,
        state=status.state if status else ("failed" if endpoint.failure else "attached"),
        pid=status.pid if status else None,
        wedged_restarts=status.wedged_restarts if status else 0,
    )
    return EngineOut.model_validate(data)


def pool_views(state: AppState) -> list[PoolOut]:
    pools = state.upstreams.pools
    if pools is None:
        return []
    return [
        PoolOut(
            model_id=snap.name,
            capacity=snap.capacity,
            busy=snap.busy,
            waiting=snap.waiting,
            waiting_by_priority=dict(snap.waiting_by_priority),
            in_flight_by_user=dict(snap.in_flight),
            oldest_wait_seconds=round(snap.oldest_wait, 3),
            mean_hold_seconds=None if snap.mean_hold is None else round(snap.mean_hold, 3),
        )
        for snap in pools.snapshots()
    ]


def engine_views(state: AppState) -> list[EngineOut]:
    manager = state.manager
    views = [
        engine_view(endpoint, entry.id, manager)
        for entry in state.registry.all_models()
        for endpoint in entry.endpoints
    ]
    for engine in manager.starting():  # a switch is bringing it up: not routable yet
        status = engine.supervisor.status()
        views.append(
            EngineOut(
                name=engine.profile.id,
                model_id=engine.profile.id,
                base_url=status.base_url,
                kind="managed",
                state=status.state,
                healthy=False,
                last_error=status.last_error,
                failure=status.last_error if status.state == "failed" else None,
                pid=status.pid,
            )
        )
    return views


def _model_state(model_id: str, entry: ModelEntry | None, manager: EngineManager) -> ModelState:
    supervisor = manager.supervisor(model_id)
    if supervisor is not None:
        return _STATES.get(supervisor.status().state, "stopped")
    return "attached" if entry is not None else "not_running"


def _descriptive_fields(
    model_id: str, profile: ModelProfile | None, entry: ModelEntry | None
) -> dict[str, Any]:
    """Name, engine and sizes: from the profile when there is one, else from the registry."""
    if profile is not None:
        return {
            "name": profile.name,
            "aliases": list(profile.aliases),
            "engine": profile.engine,
            "source": profile.path or profile.hf_id or profile.url,
            "params_b": profile.params_b,
            "dtype": profile.dtype,
            "quantization": profile.quantization,
            "context_length": profile.max_model_len,
            "description": profile.description,
            "default_params": dict(profile.default_params),
        }
    return {
        "name": entry.name if entry else model_id,
        "aliases": list(entry.aliases) if entry else [],
        "engine": None,
        "source": None,
        "params_b": None,
        "dtype": None,
        "quantization": None,
        "context_length": entry.context_length if entry else None,
        "default_params": dict(entry.default_params) if entry else {},
    }


def model_view(model_id: str, state: AppState, hardware: HardwareSpec) -> AdminModel:
    manager = state.manager
    profile = manager.profiles.get(model_id)
    entry = state.registry.get(model_id)
    return AdminModel(
        id=model_id,
        **_descriptive_fields(model_id, profile, entry),
        has_profile=profile is not None,
        registered=entry is not None,
        enabled=entry.enabled if entry else manager.is_enabled(model_id),
        active=manager.active_profile == model_id,
        healthy=any(ep.healthy for ep in entry.endpoints) if entry else None,
        state=_model_state(model_id, entry, manager),
        endpoints=[engine_view(ep, model_id, manager) for ep in entry.endpoints] if entry else [],
        verdict=check_profile(profile, hardware, manager.profiles) if profile else None,
    )


async def model_list(state: AppState) -> AdminModelList:
    hardware = await asyncio.to_thread(detected_hardware)
    manager = state.manager
    registered = [entry.id for entry in state.registry.all_models()]
    ids = registered + sorted(pid for pid in manager.profiles if pid not in registered)
    reason = manager.switch_unavailable_reason()
    return AdminModelList(
        active_profile=manager.active_profile,
        default_model=state.registry.default_model,
        can_switch=reason is None,
        switch_unavailable_reason=reason,
        drain_seconds=state.settings.switch_drain_seconds,
        hardware=HardwareSummary(
            gpus=hardware.gpus,
            gpu_memory_bytes=hardware.gpu_memory_bytes,
            detected=hardware.detected,
            names=list(hardware.names),
        ),
        models=[model_view(model_id, state, hardware) for model_id in ids],
    )


async def check(
    state: AppState,
    profile: ModelProfile,
    gpus: int | None,
    gpu_memory_bytes: int | None,
    utilization: float | None,
    max_model_len: int | None,
) -> CompatReport:
    hardware = await asyncio.to_thread(detected_hardware)
    if gpus is not None:
        hardware = HardwareSpec(
            gpus=gpus,
            gpu_memory_bytes=gpu_memory_bytes or hardware.gpu_memory_bytes,
            detected=False,
            system_memory_bytes=hardware.system_memory_bytes,
        )
    elif gpu_memory_bytes is not None:
        hardware = hardware.model_copy(update={"gpu_memory_bytes": gpu_memory_bytes})
    return check_profile(
        profile,
        hardware,
        state.manager.profiles,
        utilization=utilization,
        max_model_len=max_model_len,
    )

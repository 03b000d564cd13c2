"""Shapes of the model-management and hardware admin API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from chatgate.engines.catalog.compat import CompatReport


class GpuOut(BaseModel):
    index: int
    name: str
    memory_used_mib: int
    memory_total_mib: int
    memory_used_bytes: int
    memory_total_bytes: int
    utilization_percent: int | None = None
    temperature_c: int | None = None
    power_w: float | None = None
    power_limit_w: float | None = None


class HardwareOut(BaseModel):
    available: bool
    message: str
    devices: list[GpuOut]


class EngineMetricsOut(BaseModel):
    requests_running: float | None = None
    requests_waiting: float | None = None
    kv_cache_usage: float | None = None


class EngineOut(BaseModel):
    name: str
    model_id: str
    base_url: str
    kind: Literal["managed", "attached"]
    state: Literal["ready", "starting", "restarting", "failed", "stopped", "attached"]
    healthy: bool
    circuit: Literal["closed", "open", "half_open"] = "closed"
    outstanding: int = 0
    capacity: int | None = None  # slots it generates at once (None: not known)
    consecutive_failures: int = 0
    last_error: str | None = None
    # Its supervisor gave up (a crash loop): the diagnosis, first sentence for users.
    failure: str | None = None
    wedged_restarts: int = 0  # restarts because it produced no token for too long
    pid: int | None = None
    metrics: EngineMetricsOut | None = None


class PoolOut(BaseModel):
    """A model's engine pool: its slots and the gateway's queue in front of them."""

    model_id: str
    capacity: int  # slots of its usable replicas
    busy: int  # slots held by requests
    waiting: int  # requests queued in the gateway
    waiting_by_priority: dict[str, int]
    in_flight_by_user: dict[str, int]  # "user:12" -> slots held
    oldest_wait_seconds: float
    mean_hold_seconds: float | None


class EngineList(BaseModel):
    engines: list[EngineOut]
    pools: list[PoolOut] = []


ModelState = Literal["ready", "starting", "stopped", "failed", "attached", "not_running"]


class AdminModel(BaseModel):
    id: str
    name: str
    aliases: list[str]
    engine: Literal["vllm", "llamacpp", "openai"] | None
    source: str | None
    params_b: float | None
    dtype: str | None
    quantization: str | None
    context_length: int | None
    description: str = ""
    default_params: dict[str, Any]
    has_profile: bool
    registered: bool
    enabled: bool
    active: bool
    healthy: bool | None
    state: ModelState
    endpoints: list[EngineOut]
    verdict: CompatReport | None = None


class HardwareSummary(BaseModel):
    gpus: int
    gpu_memory_bytes: int | None
    detected: bool
    names: list[str]


class AdminModelList(BaseModel):
    active_profile: str | None
    default_model: str | None
    can_switch: bool
    switch_unavailable_reason: str | None
    drain_seconds: float  # how long a switch lets in-flight requests finish
    hardware: HardwareSummary
    models: list[AdminModel]


class SwitchLogLine(BaseModel):
    at: str
    message: str


class SwitchOut(BaseModel):
    id: str
    target: str
    previous: str | None
    phase: Literal["draining", "stopping", "starting", "ready", "failed", "rolled_back"]
    message: str
    started_at: str
    finished_at: str | None
    drain_seconds: float
    log: list[SwitchLogLine]


class SwitchState(BaseModel):
    switch: SwitchOut | None

"""``GET /metrics``: Prometheus exposition; bearer token required when one is configured."""

from __future__ import annotations

import asyncio
import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chatgate.api_route import GatewayRoute
from chatgate.deps import StateDep, bearer_token
from chatgate.errors import unauthorized
from chatgate.hardware.gpus import gpu_status
from chatgate.observability.metrics import Metrics

router = APIRouter(tags=["observability"], route_class=GatewayRoute)


def record_gpus(metrics: Metrics, status: dict[str, object]) -> None:
    devices = status.get("devices")
    for device in devices if isinstance(devices, list) else []:
        gpu = str(device["index"])
        metrics.gpu_memory_used.labels(gpu).set(device["memory_used_bytes"])
        metrics.gpu_memory_total.labels(gpu).set(device["memory_total_bytes"])
        if device.get("utilization_percent") is not None:
            metrics.gpu_utilization.labels(gpu).set(device["utilization_percent"] / 100)
        if device.get("temperature_c") is not None:
            metrics.gpu_temperature.labels(gpu).set(device["temperature_c"])
        if device.get("power_w") is not None:
            metrics.gpu_power.labels(gpu).set(device["power_w"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, state: StateDep) -> Response:
    expected = state.settings.metrics_token
    if expected is not None:
        given = bearer_token(request) or ""
        if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
            raise unauthorized("A valid metrics token is required")
    # NVML calls block: keep them off the event loop.
    record_gpus(state.metrics, await asyncio.to_thread(gpu_status))
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

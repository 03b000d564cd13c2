"""``/health`` (liveness, no auth) and ``/health/ready`` (database, Redis, engines).

Readiness needs no credentials either (load balancers, Kubernetes probes), but its details
(engine addresses, error messages that may name hosts and users) go only to callers on
this machine and to administrators; anyone else gets the verdicts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from chatgate import __version__
from chatgate.api_route import GatewayRoute
from chatgate.deps import StateDep, identify, is_loopback
from chatgate.engines.upstream.health import check_endpoint
from chatgate.engines.upstream.registry import failure_sentence
from chatgate.errors import APIError
from chatgate.openapi_responses import PUBLIC
from chatgate.shutdown import Drain
from chatgate.state import AppState

router = APIRouter(tags=["health"], responses=PUBLIC, route_class=GatewayRoute)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "healthy", "service": "chatgate", "version": __version__}


async def _check_database(state: AppState) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(5):
            async with state.db.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:  # reported in the probe's answer
        state.db_health.failed(exc)
        return {"ok": False, "latency_ms": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
    state.db_health.ok()
    seconds = time.perf_counter() - started
    state.metrics.db_latency.labels("probe").observe(seconds)
    return {"ok": True, "latency_ms": round(seconds * 1000, 2), "error": None}


async def _check_redis(state: AppState) -> dict[str, Any]:
    assert state.redis is not None
    started = time.perf_counter()
    try:
        async with asyncio.timeout(3):
            await state.redis.ping()
    except Exception as exc:  # reported in the probe's answer
        # Limits fall back to per-process counters (limits/store.py): requests still work,
        # so the gateway stays in rotation and says it is degraded.
        return {
            "ok": True,
            "status": "degraded (fail-open)",
            "latency_ms": None,
            "error": f"{type(exc).__name__}: {exc}"[:300],
        }
    return {
        "status": "ok",
        "ok": True,
        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        "error": None,
    }


async def _check_engines(state: AppState) -> dict[str, Any]:
    result: dict[str, Any] = {}
    models = state.registry.models()
    # All endpoints at once: a probe must not take (models x timeout) when engines hang.
    await asyncio.gather(
        *(check_endpoint(state.engines, ep) for model in models for ep in model.endpoints)
    )
    for model in models:
        endpoints = [
            {
                "name": ep.name,
                "url": ep.root_url,
                "healthy": ep.healthy and ep.failure is None,
                "error": ep.failure or ep.last_error,
                "failed": ep.failure is not None,
            }
            for ep in model.endpoints
        ]
        result[model.id] = {
            "ok": any(ep["healthy"] for ep in endpoints),
            "endpoints": endpoints,
        }
        failures = [ep.failure for ep in model.endpoints if ep.failure]
        if failures:
            result[model.id]["reason"] = failure_sentence(model.id, failures[0])
    return result


@router.get(
    "/health/ready",
    responses={
        503: {
            "description": "Not ready: `unavailable` names the dependencies that are down "
            "(or the status is `shutting_down`); the same body as when ready",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def ready(request: Request, state: StateDep) -> JSONResponse:
    if _draining(request):  # out of rotation at once; the streams in flight still run
        return JSONResponse(SHUTTING_DOWN_READY, status_code=503)
    checks: dict[str, Any] = {"database": await _check_database(state)}
    if state.redis is not None:
        checks["redis"] = await _check_redis(state)
    checks["engines"] = await _check_engines(state)
    ok = (
        all(c["ok"] for name, c in checks.items() if name != "engines")
        and bool(checks["engines"])
        and all(c["ok"] for c in checks["engines"].values())
    )
    if not await _sees_details(request, state):
        checks = _verdicts_only(checks)
    body: dict[str, Any] = {"status": "ready" if ok else "not_ready", "checks": checks}
    down = [name for name, check in checks.items() if name != "engines" and not check["ok"]]
    if down:
        body["unavailable"] = down  # which dependency requests cannot do without
    return JSONResponse(body, status_code=200 if ok else 503)


SHUTTING_DOWN_READY = {
    "status": "shutting_down",
    "message": "The gateway is shutting down: it finishes what runs and takes no new requests",
    "checks": {},
}


def _draining(request: Request) -> bool:
    drain: Drain | None = getattr(request.app.state, "drain", None)
    return drain is not None and drain.draining


async def _sees_details(request: Request, state: AppState) -> bool:
    """A caller on this machine (``chatgate status``) or an administrator."""
    host = request.client.host if request.client else ""
    if is_loopback(host):
        return True
    authorization = request.headers.get("authorization")
    if not authorization:
        return False
    try:
        identity = await identify(state, authorization, request.scope["path"], "GET", host)
    except APIError:
        return False  # a probe with bad credentials still learns whether it is ready
    return identity.is_admin


def _verdicts_only(checks: dict[str, Any]) -> dict[str, Any]:
    """The same shape without addresses and error texts."""
    redacted: dict[str, Any] = {}
    for name, check in checks.items():
        if name == "engines":
            redacted[name] = {
                model: {
                    "ok": result["ok"],
                    "endpoints": [
                        {"healthy": ep["healthy"], "failed": ep["failed"]}
                        for ep in result["endpoints"]
                    ],
                }
                for model, result in check.items()
            }
        else:
            redacted[name] = {"ok": check["ok"], "latency_ms": check["latency_ms"]}
            if "status" in check:
                redacted[name]["status"] = check["status"]
    return redacted

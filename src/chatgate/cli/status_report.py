"""`chatgate status`: gather the state of gateway, engines, database, Redis and GPUs, and render it.

Sources: the pid file, the embedded-engine state files (``run_dir/engine-<name>.json``), the
gateway's ``/health`` and ``/health/ready`` endpoints, and NVML for the GPUs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chatgate.cli.pidfile import live_record
from chatgate.cli.probe import base_url, fetch_json, health_ok
from chatgate.cli.process import pid_alive
from chatgate.hardware.gpus import gpu_status
from chatgate.settings import Settings

ENGINE_STATE_GLOB = "engine-*.json"
EXIT_NOT_RUNNING = 3  # LSB init-script convention for "program is not running"


def read_engine_states(run_dir: Path) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = []
    for path in sorted(run_dir.glob(ENGINE_STATE_GLOB)):
        name = path.stem.removeprefix("engine-")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            states.append({"name": name, "state": "unknown", "error": f"unreadable {path}: {exc}"})
            continue
        if not isinstance(data, dict):
            states.append({"name": name, "state": "unknown", "error": f"{path} is not an object"})
            continue
        states.append(data)
    return states


def engine_status(run_dir: Path) -> list[dict[str, Any]]:
    states = read_engine_states(run_dir)
    for state in states:
        pid = state.get("pid")
        state["process_alive"] = isinstance(pid, int) and pid_alive(pid)
    return states


def gateway_status(settings: Settings) -> dict[str, Any]:
    record = live_record(settings)
    if record is not None:
        info: dict[str, Any] = {
            "running": True,
            "managed": True,
            "pid": record.pid,
            "url": record.url,
            "started_at": record.started_at,
            "uptime_seconds": round(time.time() - record.started_epoch()),
        }
    else:
        url = base_url(settings.host, settings.port)
        # A foreground `chatgate serve` has no pid file but is still a running gateway.
        info = {"running": health_ok(url), "managed": False, "pid": None, "url": url}
    info.update(ready=False, checks={}, error=None)
    if info["running"]:
        info.update(_readiness(info["url"]))
    return info


def _readiness(url: str) -> dict[str, Any]:
    try:
        status, body = fetch_json(f"{url}/health/ready")
    except (OSError, ValueError) as exc:
        return {"ready": False, "error": f"GET {url}/health/ready failed: {exc}"}
    body = body if isinstance(body, dict) else {}
    checks = body.get("checks")
    return {
        "ready": status == 200 and body.get("status") == "ready",
        "ready_status_code": status,
        "checks": checks if isinstance(checks, dict) else {},
    }


def _check(checks: dict[str, Any], name: str) -> dict[str, Any]:
    value = checks.get(name)
    return dict(value) if isinstance(value, dict) else {}


def collect_status(settings: Settings) -> dict[str, Any]:
    gateway = gateway_status(settings)
    checks: dict[str, Any] = gateway.pop("checks")
    masked = settings.masked()
    redis = None
    if settings.redis_url:
        redis = {"url": masked["redis_url"], **_check(checks, "redis")}
    return {
        "gateway": gateway,
        "engines": engine_status(settings.run_dir),
        "models": _check(checks, "engines"),
        "database": {"url": masked["database_url"], **_check(checks, "database")},
        "redis": redis,
        "gpus": gpu_status(),
    }


def status_exit_code(report: dict[str, Any]) -> int:
    gateway = report["gateway"]
    if not gateway["running"]:
        return EXIT_NOT_RUNNING
    return 0 if gateway["ready"] else 1


# --------------------------------------------------------------------------- status: text


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _ok(value: Any) -> str:
    if value is None:
        return "unknown"
    return "ok" if value else "FAIL"


def render_status(report: dict[str, Any]) -> Iterator[str]:
    yield from _render_gateway(report["gateway"])
    yield from _render_engines(report["engines"], report["models"])
    yield from _render_store("Database", report["database"])
    if report["redis"] is None:
        yield f"{'Redis':<10} not configured"
    else:
        yield from _render_store("Redis", report["redis"])
    yield from _render_gpus(report["gpus"])


def _render_gateway(gateway: dict[str, Any]) -> Iterator[str]:
    if not gateway["running"]:
        yield f"{'Gateway':<10} not running"
        return
    parts = [f"running at {gateway['url']}"]
    if gateway["managed"]:
        parts.append(f"pid {gateway['pid']}, up {format_duration(gateway['uptime_seconds'])}")
    else:
        parts.append("not started by `chatgate start` (no pid file)")
    parts.append("ready" if gateway["ready"] else "NOT READY")
    yield f"{'Gateway':<10} " + ", ".join(parts)
    if gateway["error"]:
        yield f"{'':<10} {gateway['error']}"


def _render_engines(engines: list[dict[str, Any]], models: dict[str, Any]) -> Iterator[str]:
    if not engines and not models:
        yield f"{'Engines':<10} none"
        return
    yield "Engines"
    for engine in engines:
        process = "alive" if engine.get("process_alive") else "not running"
        yield (
            f"  {engine.get('name', '?'):<20} {engine.get('state', 'unknown'):<11}"
            f" pid {engine.get('pid', '-')} ({process}), port {engine.get('port', '-')},"
            f" restarts {engine.get('restarts', 0)}"
            + (
                f", wedged restarts {engine['wedged_restarts']}"
                if engine.get("wedged_restarts")
                else ""
            )  # fmt: skip
        )
        error = str(engine.get("last_error") or engine.get("error") or "")
        if error:
            label = "FAILED:" if engine.get("state") == "failed" else "last error:"
            # The diagnosis' sentences, not the log lines after them (`chatgate logs engine`).
            yield f"  {'':<20} {label} {error.split(chr(10), 1)[0]}"
    for model_id, model in models.items():
        yield f"  model {model_id}: {_ok(model.get('ok'))}"
        if model.get("reason"):
            yield f"    {model['reason']}"
        for endpoint in model.get("endpoints", []):
            health = "healthy" if endpoint.get("healthy") else f"down ({endpoint.get('error')})"
            yield f"    {endpoint.get('name')}: {endpoint.get('url')} {health}"


def _render_store(label: str, store: dict[str, Any]) -> Iterator[str]:
    line = f"{label:<10} {store['url']}"
    if "ok" in store:
        line += f"  {_ok(store['ok'])}"
        if store.get("latency_ms") is not None:
            line += f" ({float(store['latency_ms']):.1f} ms)"
    else:
        line += "  (not checked: gateway not running)"
    yield line
    if store.get("error"):
        yield f"{'':<10} {store['error']}"


def _render_gpus(gpus: dict[str, Any]) -> Iterator[str]:
    if not gpus["available"]:
        yield f"{'GPUs':<10} {gpus['message']}"
        return
    yield "GPUs"
    for gpu in gpus["devices"]:
        extras = [f"{gpu['memory_used_mib']}/{gpu['memory_total_mib']} MiB"]
        if gpu["utilization_percent"] is not None:
            extras.append(f"{gpu['utilization_percent']}% busy")
        if gpu["temperature_c"] is not None:
            extras.append(f"{gpu['temperature_c']} C")
        yield f"  [{gpu['index']}] {gpu['name']}: " + ", ".join(extras)

"""Active engine checks: vLLM answers ``/health``; llama-cpp-python has none, so its
model list (``/v1/models``) stands in. A healthy answer also closes an open circuit:
the replica is readmitted without waiting for a trial request."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from chatgate.engines.client import EngineClient
from chatgate.engines.endpoint import Endpoint

log = logging.getLogger("chatgate.engines")

CHECK_TIMEOUT = 3.0
_NO_SUCH_ROUTE = (404, 405)


async def check_endpoint(client: EngineClient, endpoint: Endpoint) -> bool:
    error = await _probe(client, endpoint)
    # Only an open circuit is closed: a probe that passes while requests keep failing
    # (e.g. a broken model behind a live server) must not keep resetting the count.
    if error is None and endpoint.breaker.open_until is not None:
        log.info("engine %s is healthy again: back in rotation", endpoint.name)
        endpoint.breaker.succeeded()
    endpoint.healthy = error is None
    endpoint.last_error = error
    return error is None


async def _probe(client: EngineClient, endpoint: Endpoint) -> str | None:
    """None when healthy, else why not."""
    try:
        if not endpoint.probe_models:
            status = await _status(client, endpoint.root_url + "/health")
            if status not in _NO_SUCH_ROUTE:
                return None if status == 200 else f"HTTP {status}"
            endpoint.probe_models = True  # remembered: one request per check from now on
        status = await _status(client, endpoint.base_url + "/models")
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        return f"unreachable ({type(exc).__name__})"
    return None if status == 200 else f"HTTP {status}"


async def _status(client: EngineClient, url: str) -> int:
    async with asyncio.timeout(CHECK_TIMEOUT):
        async with client.session.get(url) as response:
            return response.status


async def discover_upstream_model(client: EngineClient, endpoint: Endpoint) -> str | None:
    """The engine's own model id when it serves exactly one model."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with client.session.get(endpoint.base_url + "/models") as response:
                if response.status != 200:
                    return None
                data = await response.json()
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        return None
    models = data.get("data") if isinstance(data, dict) else None
    if isinstance(models, list) and len(models) == 1 and isinstance(models[0], dict):
        model_id = models[0].get("id")
        return str(model_id) if model_id else None
    return None

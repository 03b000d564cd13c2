"""Active engine checks: an endpoint is healthy when its model list answers."""

from __future__ import annotations

import asyncio

import aiohttp

from chatgate.engines.client import EngineClient
from chatgate.engines.registry import Endpoint

CHECK_TIMEOUT = 3.0


async def check_endpoint(client: EngineClient, endpoint: Endpoint) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with client.session.get(endpoint.base_url + "/models") as response:
                ok = response.status == 200
                endpoint.last_error = None if ok else f"HTTP {response.status}"
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        ok = False
        endpoint.last_error = f"unreachable ({type(exc).__name__})"
    endpoint.healthy = ok
    return ok


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

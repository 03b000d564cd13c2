"""Active engine checks: vLLM and llama-server answer ``/health``; for engines without
one the model list (``/v1/models``) stands in. A healthy answer also closes an open
circuit: the replica is readmitted without waiting for a trial request. Being up is not
being able to generate: ``probe_generation`` asks for one token (an embedding-only engine,
which cannot generate, for the vector of one input)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint, Task

log = logging.getLogger("chatgate.engines")

CHECK_TIMEOUT = 3.0
GENERATION_TIMEOUT = 60.0  # one token; a busy engine answers once a slot frees
PROBE_HEADER = "X-Chatgate-Probe"  # marks the 1-token probe in engine logs
_NO_SUCH_ROUTE = (404, 405)
PROBE_PROMPT = "Hello"  # what a probe asks for one token of


def result_error(task: Task, data: object) -> str | None:
    """Why an engine's answer to the probe is not a real result (None: it is one): a
    generation needs a choice, an embedding a non-empty vector of numbers."""
    if task == "generate":
        if not isinstance(data, dict) or not data.get("choices"):
            return "a 1-token generation returned no choices"
        return None
    items = data.get("data") if isinstance(data, dict) else None
    first = items[0] if isinstance(items, list) and items else None
    vector = first.get("embedding") if isinstance(first, dict) else None
    if not isinstance(vector, list) or not vector:
        return "a 1-input embedding returned no vector"
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector):
        return "a 1-input embedding returned a vector that is not numbers"
    return None


async def check_endpoint(client: EngineClient, endpoint: Endpoint) -> bool:
    """Whether the engine answers its health check (``endpoint.healthy`` also counts the
    last 1-token probe)."""
    error = await _probe(client, endpoint)
    # Only an open circuit is closed: a probe that passes while requests keep failing
    # (e.g. a broken model behind a live server) must not keep resetting the count.
    if error is None and endpoint.breaker.open_until is not None:
        log.info("engine %s is healthy again: back in rotation", endpoint.name)
        endpoint.breaker.succeeded()
    endpoint.healthy = error is None and endpoint.probe_error is None
    endpoint.last_error = error or endpoint.probe_error
    return error is None  # reachable (a failed generation probe is the caller's to redo)


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


async def _get_json(client: EngineClient, url: str) -> object:
    """The JSON an engine answers a GET with; None when it does not (any reason)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            async with client.session.get(url) as response:
                if response.status != 200:
                    return None
                return await response.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
        return None


async def discover_upstream_model(client: EngineClient, endpoint: Endpoint) -> str | None:
    """The engine's own model id when it serves exactly one model."""
    data = await _get_json(client, endpoint.base_url + "/models")
    models = data.get("data") if isinstance(data, dict) else None
    if isinstance(models, list) and len(models) == 1 and isinstance(models[0], dict):
        model_id = models[0].get("id")
        return str(model_id) if model_id else None
    return None


async def probe_generation(client: EngineClient, endpoint: Endpoint) -> str | None:
    """A real result, None when it worked, else why not: one token through
    ``/completions``, or one vector through ``/embeddings`` for an engine that only embeds
    (``endpoint.task``; a pooling vLLM answers 404 to any generation)."""
    if endpoint.task == "embed":
        what, path = "a 1-input embedding", "/embeddings"
        body: dict[str, object] = {"model": endpoint.upstream_model, "input": PROBE_PROMPT}
    else:
        what, path = "a 1-token generation", "/completions"
        body = {"model": endpoint.upstream_model, "prompt": PROBE_PROMPT, "max_tokens": 1}
    try:
        async with asyncio.timeout(GENERATION_TIMEOUT):
            async with client.session.post(
                endpoint.base_url + path, json=body, headers={PROBE_HEADER: "1"}
            ) as resp:
                if resp.status != 200:
                    return f"{what} failed: HTTP {resp.status}"
                data = await resp.json(content_type=None)
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        return f"{what} failed ({type(exc).__name__})"
    return result_error(endpoint.task, data)


async def learn_capacity(client: EngineClient, endpoint: Endpoint) -> int | None:
    """An engine's slots, when it says: llama-server's ``/props`` (``total_slots``)."""
    data = await _get_json(client, endpoint.root_url + "/props")
    slots = data.get("total_slots") if isinstance(data, dict) else None
    return slots if isinstance(slots, int) and slots > 0 else None

"""``/v1/messages/count_tokens``: the engine's own tokenizer when it has one.

An estimate would drift from what the engine later bills (the usage rows use the
engine's counts), so the prompt is counted where it will run: vLLM's ``POST /tokenize``
takes chat messages directly; llama.cpp's llama-server renders them with
``POST /apply-template`` and counts the text with ``POST /tokenize``. An engine with
neither (or none reachable) gets the gateway's estimate, and the answer says which.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from chatgate.engines.client import EngineClient
from chatgate.engines.endpoint import Endpoint
from chatgate.engines.stream import estimate_prompt_tokens

log = logging.getLogger("chatgate.anthropic")

TOKENIZE_TIMEOUT = 10.0  # seconds for the whole count, all calls together


async def count_tokens(
    client: EngineClient,
    endpoints: list[Endpoint],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
) -> tuple[int, str]:
    """(tokens, "engine" | "estimate")."""
    for endpoint in endpoints[:1]:  # the first usable replica: all serve the same model
        try:
            async with asyncio.timeout(TOKENIZE_TIMEOUT):
                counted = await _engine_count(client, endpoint, messages, tools)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("engine %s: no token count (%r); estimating", endpoint.name, exc)
            counted = None
        if counted is not None:
            return counted, "engine"
    return estimate_prompt_tokens(messages) + _tools_estimate(tools), "estimate"


async def _engine_count(
    client: EngineClient,
    endpoint: Endpoint,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
) -> int | None:
    extra: dict[str, Any] = {"tools": tools} if tools else {}
    root = endpoint.root_url
    # vLLM: chat messages in, {"count": n} out. llama-server answers {"tokens": []} to a
    # body without "content", so it falls through to its own two steps.
    body = {"model": endpoint.upstream_model, "messages": messages, **extra}
    data = await _post(client, root + "/tokenize", body)
    if isinstance(data, dict) and isinstance(data.get("count"), int):
        return int(data["count"])
    rendered = await _post(client, root + "/apply-template", {"messages": messages, **extra})
    prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
    if not isinstance(prompt, str):
        return None
    # add_special: the BOS token the engine adds when it runs the same prompt.
    data = await _post(client, root + "/tokenize", {"content": prompt, "add_special": True})
    tokens = data.get("tokens") if isinstance(data, dict) else None
    return len(tokens) if isinstance(tokens, list) else None


async def _post(client: EngineClient, url: str, body: dict[str, Any]) -> Any:
    async with client.session.post(url, json=body) as response:
        if response.status != 200:
            return None
        return await response.json(content_type=None)


def _tools_estimate(tools: list[dict[str, Any]] | None) -> int:
    """Tool definitions are part of the prompt too (about 4 characters a token)."""
    if not tools:
        return 0
    return sum(len(str(tool)) for tool in tools) // 4

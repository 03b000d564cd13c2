"""Token counts from the engine's own tokenizer, for engines that report no usage.

Usage rows, limits and the ``usage`` a client reads must be the engine's counts: an
estimate drifts (12 counted for 37 real tokens). llama.cpp and vLLM report usage on
every stream (the gateway always asks for it); this is for what remains: an attached
server that reports none, and Anthropic's ``count_tokens``, which generates nothing.
vLLM's ``POST /tokenize`` takes chat messages (or a prompt) and answers ``{"count": n}``;
llama-server renders messages with ``POST /apply-template`` and answers ``/tokenize``
with the token list. Every helper answers None when the engine has neither.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

import aiohttp

from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.stream import StreamStats

log = logging.getLogger("chatgate.engines")

TOKENIZE_TIMEOUT = 10.0  # seconds for one whole count, all its calls together


async def fill_counts(
    client: EngineClient,
    endpoint: Endpoint | None,
    path: str,
    payload: dict[str, Any],
    stats: StreamStats,
    texts: list[str],
) -> None:
    """Set the counts an engine did not report to its tokenizer's. Where that cannot count
    either, they stay unset: the row then counts a token per streamed chunk and estimates
    the prompt (``StreamStats.output_tokens``/``input_tokens``), alike for a stream and a
    non-streamed answer (both are streamed from the engine). ``path``: the engine route
    ("/chat/completions" or "/completions"), ``texts``: each answer's text."""
    if stats.has_usage or endpoint is None:
        return
    if stats.prompt_tokens is None:
        prompt = count_prompt(client, endpoint, path, payload)
        stats.prompt_tokens = await within_limit(endpoint, prompt)
    if stats.completion_tokens is None:
        answers = count_texts(client, endpoint, texts)
        stats.completion_tokens = await within_limit(endpoint, answers)


async def count_prompt(
    client: EngineClient, endpoint: Endpoint, path: str, payload: dict[str, Any]
) -> int | None:
    """A request's prompt tokens: chat messages (and tools), or a legacy prompt (a text,
    texts, token ids, or lists of token ids)."""
    if path == "/chat/completions":
        return await count_messages(client, endpoint, payload["messages"], payload.get("tools"))
    prompts = payload.get("prompt")
    if isinstance(prompts, list) and prompts and all(isinstance(p, int) for p in prompts):
        return len(prompts)  # one prompt of token ids
    total = 0
    for prompt in prompts if isinstance(prompts, list) else [prompts]:
        if isinstance(prompt, list):
            counted: int | None = len(prompt)  # token ids
        else:
            counted = await count_text(client, endpoint, str(prompt), special=True)
        if counted is None:
            return None
        total += counted
    return total


async def within_limit(endpoint: Endpoint, counting: Awaitable[int | None]) -> int | None:
    """The count, or None when the engine cannot give it in time (then logged)."""
    try:
        async with asyncio.timeout(TOKENIZE_TIMEOUT):
            return await counting
    except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
        log.info("engine %s: no token count (%r)", endpoint.name, exc)
        return None


async def count_messages(
    client: EngineClient,
    endpoint: Endpoint,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
) -> int | None:
    """The prompt tokens of a chat request, as the engine will count them."""
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
    return await count_text(client, endpoint, prompt, special=True)


async def count_text(
    client: EngineClient, endpoint: Endpoint, text: str, *, special: bool = False
) -> int | None:
    """The tokens of a plain text: an answer (``special`` False), or a legacy prompt.

    One body both engines read: vLLM takes ``prompt``/``add_special_tokens``, llama-server
    ``content``/``add_special``; each ignores the other's fields."""
    if not text:
        return 0
    body = {
        "model": endpoint.upstream_model,
        "prompt": text,
        "add_special_tokens": special,
        "content": text,
        "add_special": special,
    }
    data = await _post(client, endpoint.root_url + "/tokenize", body)
    if not isinstance(data, dict):
        return None
    if isinstance(data.get("count"), int):
        return int(data["count"])
    tokens = data.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


async def count_texts(client: EngineClient, endpoint: Endpoint, texts: list[str]) -> int | None:
    """The tokens of several answers together (``n`` > 1)."""
    total = 0
    for text in texts:
        counted = await count_text(client, endpoint, text)
        if counted is None:
            return None
        total += counted
    return total


async def _post(client: EngineClient, url: str, body: dict[str, Any]) -> Any:
    async with client.session.post(url, json=body) as response:
        if response.status != 200:
            return None
        return await response.json(content_type=None)

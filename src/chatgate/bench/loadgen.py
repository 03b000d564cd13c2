"""Async load generator over the OpenAI streaming chat API.

Closed loop: ``concurrency`` workers each send their next request when the last one ends.
Open loop: requests start at Poisson arrival times of a fixed rate, however slow the target.
Each target gets its own ``aiohttp.ClientSession`` whose connection limit covers the load.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from chatgate.bench.stats import RequestResult

_WORDS = (
    "the quick brown fox jumps over a lazy dog while seven bright stars watch quietly "
    "from far above green hills and old stone walls near the river"
).split()
FOLLOW_UP = "Please continue, and add one more detail."


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str  # ends with /v1
    api_key: str | None = None

    @property
    def chat_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


def parse_target(spec: str) -> Target:
    """``NAME=URL[@KEY]``; a URL without ``/v1`` gets it appended."""
    name, sep, rest = spec.partition("=")
    if not sep or not name or not rest:
        raise ValueError(f"target must be NAME=URL[@KEY], got {spec!r}")
    url, _, key = rest.partition("@")
    url = url.rstrip("/")
    if not url.endswith("/v1"):
        url += "/v1"
    return Target(name.strip(), url, key or None)


@dataclass
class Workload:
    """What each request asks for."""

    model: str = "default"
    input_tokens: int = 32
    max_tokens: int = 16
    multi_turn: int = 1
    timeout_s: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)


def make_prompt(tokens: int, tag: str) -> str:
    """About ``tokens`` tokens of plain words, starting with ``tag`` so that prompts differ."""
    words = [tag] + [_WORDS[i % len(_WORDS)] for i in range(max(tokens - 1, 0))]
    return " ".join(words)


def poisson_arrivals(rate: float, count: int, rng: random.Random) -> list[float]:
    """Start offsets (seconds) of ``count`` requests arriving as a Poisson process of ``rate``/s."""
    if rate <= 0:
        raise ValueError("rate must be > 0")
    offsets, now = [], 0.0
    for _ in range(count):
        now += rng.expovariate(rate)
        offsets.append(now)
    return offsets


def _payload(workload: Workload, messages: list[dict[str, str]]) -> bytes:
    body: dict[str, Any] = {
        "model": workload.model,
        "messages": messages,
        "max_tokens": workload.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        **workload.extra,
    }
    return orjson.dumps(body)


def _content(chunk: dict[str, Any]) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    delta = choices[0].get("delta") or {}
    return str(delta.get("content") or choices[0].get("text") or "")


async def _read_stream(
    response: aiohttp.ClientResponse, start: float, result: RequestResult
) -> str:
    """Consume an SSE stream; fill chunk times, TTFT and usage. Returns the generated text."""
    parts: list[str] = []
    chunks = 0
    async for raw in response.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            break
        chunk = orjson.loads(data)
        if "error" in chunk:
            raise RuntimeError(str(chunk["error"])[:200])
        text = _content(chunk)
        if text:
            now = time.perf_counter() - start
            if result.ttft is None:
                result.ttft = now
            result.chunk_times.append(now)
            parts.append(text)
            chunks += 1
        usage = chunk.get("usage")
        if usage:
            result.output_tokens = int(usage.get("completion_tokens") or 0)
            result.prompt_tokens = usage.get("prompt_tokens")
    if result.output_tokens == 0:
        result.output_tokens = chunks
    return "".join(parts)


async def send_request(
    session: aiohttp.ClientSession,
    target: Target,
    workload: Workload,
    messages: list[dict[str, str]],
) -> tuple[RequestResult, str]:
    """One streaming chat completion; never raises (errors land in the result)."""
    headers = {"content-type": "application/json"}
    if target.api_key:
        headers["authorization"] = f"Bearer {target.api_key}"
    result = RequestResult(ok=False, e2e=0.0)
    text = ""
    start = time.perf_counter()
    for attempt in range(2):
        try:
            async with session.post(
                target.chat_url, data=_payload(workload, messages), headers=headers
            ) as response:
                if response.status != 200:
                    await response.read()
                    result.error = f"HTTP {response.status}"
                else:
                    text = await _read_stream(response, start, result)
                    result.ok = result.ttft is not None
                    if not result.ok:
                        result.error = "empty stream"
        except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
            if attempt == 0 and result.ttft is None and _stale(exc):
                continue  # as any client does: llama-server closes idle keep-alive sockets
            result.error = type(exc).__name__
        break
    result.e2e = time.perf_counter() - start
    return result, text


def _stale(exc: BaseException) -> bool:
    """A reused connection the server had closed (not a refused new one)."""
    stale = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
    return isinstance(exc, stale) and not isinstance(exc, aiohttp.ClientConnectorError)


class Budget:
    """How many requests a step may still start: a count, a deadline, or both."""

    def __init__(self, requests: int | None, duration_s: float | None) -> None:
        if requests is None and duration_s is None:
            raise ValueError("give a request count or a duration")
        self._left = requests
        self._deadline = None if duration_s is None else time.perf_counter() + duration_s

    def take(self) -> bool:
        if self._deadline is not None and time.perf_counter() >= self._deadline:
            return False
        if self._left is not None:
            if self._left <= 0:
                return False
            self._left -= 1
        return True


def _sessions(workload: Workload, tag: str) -> Iterator[list[dict[str, str]]]:
    """Endless message lists: a new session every ``multi_turn`` turns (the caller appends)."""
    number = 0
    while True:
        number += 1
        messages = [
            {"role": "user", "content": make_prompt(workload.input_tokens, f"{tag}-{number}")}
        ]
        for turn in range(workload.multi_turn):
            if turn:
                messages.append({"role": "user", "content": FOLLOW_UP})
            yield messages


async def run_closed(
    session: aiohttp.ClientSession,
    target: Target,
    workload: Workload,
    concurrency: int,
    budget: Budget,
    on_result: Callable[[RequestResult], None] | None = None,
) -> tuple[list[RequestResult], float]:
    """``concurrency`` sessions, each sending its next turn when the last one ends."""
    results: list[RequestResult] = []

    async def worker(index: int) -> None:
        for messages in _sessions(workload, f"w{index}-{random.getrandbits(32):08x}"):
            if not budget.take():
                return
            result, text = await send_request(session, target, workload, messages)
            results.append(result)
            if on_result:
                on_result(result)
            messages.append({"role": "assistant", "content": text or "ok"})

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return results, time.perf_counter() - start


async def run_open(
    session: aiohttp.ClientSession,
    target: Target,
    workload: Workload,
    offsets: list[float],
    on_result: Callable[[RequestResult], None] | None = None,
) -> tuple[list[RequestResult], float]:
    """Start one single-turn request at each offset (seconds from now), then wait for all."""
    results: list[RequestResult] = []
    tag = f"o-{random.getrandbits(32):08x}"

    async def one(index: int) -> None:
        prompt = make_prompt(workload.input_tokens, f"{tag}-{index}")
        messages = [{"role": "user", "content": prompt}]
        result, _ = await send_request(session, target, workload, messages)
        results.append(result)
        if on_result:
            on_result(result)

    start = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for index, offset in enumerate(offsets):
        delay = start + offset - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    return results, time.perf_counter() - start


def client_session(limit: int, timeout_s: float) -> aiohttp.ClientSession:
    """The per-target session: enough connections for the load, no DNS cache games."""
    connector = aiohttp.TCPConnector(limit=max(limit, 1), limit_per_host=max(limit, 1))
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=10)
    return aiohttp.ClientSession(connector=connector, timeout=timeout)

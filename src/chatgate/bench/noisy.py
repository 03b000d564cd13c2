"""The ``noisy-neighbour`` workload: one user's flood against another user's short requests.

Engines serve first come, first served, so a user with many long requests in flight makes
everybody else wait behind all of them. This measures that, through one gateway URL with two
API keys (two users):

1. one A request alone, ``service_runs`` times (A's service time on an idle engine);
2. B alone: ``b_requests`` short requests one after another (B's TTFT on an idle engine, and
   B's demand in output tokens/s);
3. the flood: ``a_streams`` A workers, each sending its next long request when the last one
   ends; ``b_delay_s`` later B sends its ``b_requests`` again, one after another. When B is
   done and the flood has lasted ``flood_s``, or ``duration_s`` after the flood began, A's
   requests in flight are cancelled.

A's judged throughput is over the whole flood: a fixed length, so that the run with the
fair queue and the run without it compare, B's requests being a small part of it. In the
window from B's first request to B's last answer (both users compete there) are counted,
chunk by chunk, each user's tokens/s and slots held against slots wanted (fairness.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from chatgate.bench import fairness
from chatgate.bench.loadgen import (
    Target,
    Workload,
    _payload,
    _read_stream,
    client_session,
)
from chatgate.bench.stats import RequestResult

Progress = Callable[[str], None]
A_PROMPT = "Write a long story, at least 300 words, about a lighthouse keeper and the sea."
B_PROMPT = "Say hello in one short sentence."
ERROR_PAUSE_S = 0.05  # an A worker whose request failed waits this long (no busy loop on 429)


@dataclass
class NoisyConfig:
    url: str  # the gateway's base URL, ending with /v1
    key_a: str | None
    key_b: str | None
    model: str = "default"
    a_streams: int = 16
    a_max_tokens: int = 200
    b_requests: int = 10
    b_max_tokens: int = 16
    duration_s: float = 600.0  # cap on the flood, from its start
    flood_s: float = 0.0  # the flood lasts this long at least (0: it ends with B)
    b_delay_s: float = 1.0  # B starts this long after A's workers (all of A queued by then)
    service_runs: int = 3
    timeout_s: float = 600.0
    baseline: Path | None = None


@dataclass
class Sample:
    """One request and its absolute start (perf_counter), so its chunks can be placed in
    time; ``finished`` stays False for a request cancelled at the end of the run."""

    started: float
    result: RequestResult = field(default_factory=lambda: RequestResult(ok=False, e2e=0.0))
    finished: bool = False


@dataclass
class User:
    target: Target
    workload: Workload
    prompt: str


def _user(name: str, key: str | None, config: NoisyConfig, max_tokens: int, prompt: str) -> User:
    workload = Workload(config.model, max_tokens=max_tokens, timeout_s=config.timeout_s)
    return User(Target(name, config.url, key), workload, prompt)


def _users(config: NoisyConfig) -> tuple[User, User]:
    return (
        _user("A", config.key_a, config, config.a_max_tokens, A_PROMPT),
        _user("B", config.key_b, config, config.b_max_tokens, B_PROMPT),
    )


def _messages(user: User, tag: str) -> list[dict[str, str]]:
    """A tag first, so that no two prompts share a prefix (no engine prefix cache hits)."""
    return [{"role": "user", "content": f"[{tag}] {user.prompt}"}]


async def stream(session: aiohttp.ClientSession, user: User, tag: str, sample: Sample) -> None:
    """One streaming request into ``sample``; errors land in it. If cancelled, what arrived
    so far stays in ``sample.result`` (``finished`` False) and the connection is closed."""
    result = sample.result
    headers = {"content-type": "application/json"}
    if user.target.api_key:
        headers["authorization"] = f"Bearer {user.target.api_key}"
    body = _payload(user.workload, _messages(user, tag))
    try:
        async with session.post(user.target.chat_url, data=body, headers=headers) as response:
            if response.status != 200:
                await response.read()
                result.error = f"HTTP {response.status}"
            else:
                await _read_stream(response, sample.started, result)
                result.ok = result.ttft is not None
                result.error = None if result.ok else "empty stream"
    except (aiohttp.ClientError, TimeoutError, ValueError, RuntimeError) as exc:
        result.error = type(exc).__name__
    finally:
        result.e2e = time.perf_counter() - sample.started
    sample.finished = True


def _progress(user: User, index: int, count: int, result: RequestResult) -> str:
    ttft = "-" if result.ttft is None else f"{result.ttft * 1000:.0f} ms"
    error = f", {result.error}" if result.error else ""
    return f"[noisy] {user.target.name} {index + 1}/{count}: TTFT {ttft}{error}"


async def _sequence(
    session: aiohttp.ClientSession,
    user: User,
    count: int,
    tag: str,
    samples: list[Sample],
    say: Progress | None = None,
) -> None:
    """``count`` requests, each right after the previous one finished (``say``: a line each,
    as a flood on a slow engine can take minutes)."""
    for index in range(count):
        sample = Sample(time.perf_counter())
        samples.append(sample)
        await stream(session, user, f"{tag}-{index}", sample)
        if say is not None:
            say(_progress(user, index, count, sample.result))


async def _a_worker(
    session: aiohttp.ClientSession, user: User, index: int, salt: str, samples: list[Sample]
) -> None:
    """One of A's streams: the next request as soon as the last one ended, until cancelled."""
    number = 0
    while True:
        number += 1
        sample = Sample(time.perf_counter())
        samples.append(sample)
        await stream(session, user, f"a{index}-{number}-{salt}", sample)
        if not sample.result.ok:
            await asyncio.sleep(ERROR_PAUSE_S)


async def _check_keys(session: aiohttp.ClientSession, users: tuple[User, User]) -> None:
    """One request per user first: a wrong key or model fails here, not as a flood of errors
    (and the engine's first, slower request is out of the way)."""
    for user in users:
        sample = Sample(time.perf_counter())
        await stream(session, user, f"check-{random.getrandbits(32):08x}", sample)
        if not sample.result.ok:
            raise RuntimeError(f"user {user.target.name}: {sample.result.error}")


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel A's workers and wait until every in-flight request has closed its connection."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _flood(
    session: aiohttp.ClientSession, users: tuple[User, User], config: NoisyConfig, say: Progress
) -> dict[str, Any]:
    """A's workers and B's sequence side by side; returns the samples and the window."""
    user_a, user_b = users
    salt = f"{random.getrandbits(32):08x}"
    a_samples: list[Sample] = []
    b_samples: list[Sample] = []
    start = time.perf_counter()
    workers = [
        asyncio.create_task(_a_worker(session, user_a, i, salt, a_samples))
        for i in range(config.a_streams)
    ]
    capped = False
    try:
        await asyncio.sleep(config.b_delay_s)
        b_start = time.perf_counter()
        left = max(config.duration_s - (b_start - start), 0.0)
        try:
            async with asyncio.timeout(left):
                await _sequence(session, user_b, config.b_requests, f"b-{salt}", b_samples, say)
        except TimeoutError:
            capped = True
        b_end = time.perf_counter()
        rest = min(config.flood_s, config.duration_s) - (b_end - start)
        if rest > 0:
            await asyncio.sleep(rest)
    finally:
        await _stop(workers)
    stop = time.perf_counter()
    return {
        "a": a_samples,
        "b": b_samples,
        "window": (b_start, b_end),
        "flood": (start, stop),
        "flood_s": stop - start,
        "capped": capped,
    }


def _a_tokens(samples: list[Sample], window: tuple[float, float]) -> float:
    return sum(
        fairness.tokens_in_window(
            s.started, s.result.chunk_times, s.result.output_tokens if s.finished else 0, window
        )
        for s in samples
    )


def _a_stats(
    samples: list[Sample], window: tuple[float, float], flood: tuple[float, float]
) -> dict[str, Any]:
    """A's counts, and its output tokens/s in the window (the judged figure) and over the
    whole flood (ramp-up and the tail after B included, for context)."""
    tokens = _a_tokens(samples, window)
    finished = [s for s in samples if s.finished]
    return {
        "requests": len(samples),
        "completed": sum(s.result.ok for s in finished),
        "errors": sum(not s.result.ok for s in finished),
        "cancelled": len(samples) - len(finished),
        "output_tokens": tokens,
        "output_throughput": tokens / max(window[1] - window[0], 1e-9),
        "flood_output_throughput": _a_tokens(samples, flood) / max(flood[1] - flood[0], 1e-9),
    }


def _held(samples: list[Sample]) -> list[tuple[float, float]]:
    """When each request held an engine slot, as the client sees it: its first token to its
    end (for one cancelled at the end, to its cancellation)."""
    return [
        (s.started + s.result.ttft, s.started + s.result.e2e)
        for s in samples
        if s.result.ttft is not None
    ]


def _outstanding(samples: list[Sample]) -> list[tuple[float, float]]:
    return [(s.started, s.started + s.result.e2e) for s in samples]


def _slots(flood: dict[str, Any]) -> dict[str, Any]:
    """Jain's index over slots held against slots wanted, in the window (fairness.py)."""
    window = flood["window"]
    held = {u: fairness.mean_concurrency(_held(flood[u.lower()]), window) for u in ("A", "B")}
    wanted = {
        u: fairness.mean_concurrency(_outstanding(flood[u.lower()]), window) for u in ("A", "B")
    }
    return fairness.fairness(held, dict(wanted))


def _b_ttfts(samples: list[Sample]) -> tuple[list[float], int]:
    """B's TTFTs; a request cut by the time cap before its first token counts with the time
    it had waited (a lower bound: leaving it out would hide the starvation it measures)."""
    ttfts: list[float] = []
    censored = 0
    for s in samples:
        if s.result.ttft is not None:
            ttfts.append(s.result.ttft)
        elif not s.finished:
            ttfts.append(s.result.e2e)
            censored += 1
    return ttfts, censored


def _b_stats(samples: list[Sample], seconds: float) -> dict[str, Any]:
    ttfts, censored = _b_ttfts(samples)
    tokens = sum(s.result.output_tokens for s in samples if s.finished and s.result.ok)
    return {
        "requests": len(samples),
        "completed": sum(s.finished and s.result.ok for s in samples),
        "errors": sum(s.finished and not s.result.ok for s in samples),
        "unfinished": sum(not s.finished for s in samples),
        "ttft_ms": fairness.ttft_summary(ttfts),
        "ttft_censored": censored,
        "output_tokens": tokens,
        "duration_s": seconds,
        "output_throughput": tokens / max(seconds, 1e-9),
    }


def _service(samples: list[Sample]) -> dict[str, Any]:
    good = [s.result for s in samples if s.result.ok]
    runs = [r.e2e * 1000.0 for r in good]
    tokens = [r.output_tokens for r in good]
    return {
        "runs_ms": runs,
        "median_ms": fairness.median(runs),
        "mean_tokens": sum(tokens) / len(tokens) if tokens else None,
        "errors": len(samples) - len(good),
    }


def load_baseline(path: Path | None, model: str) -> dict[str, Any] | None:
    """Read before the run, so that a bad file fails in a second, not after the flood."""
    if path is None:
        return None
    return {"file": str(path), "a_output_throughput": fairness.baseline_throughput(path, model)}


def _workload(config: NoisyConfig) -> dict[str, Any]:
    keys = ("model", "a_streams", "a_max_tokens", "b_requests", "b_max_tokens", "duration_s",
            "flood_s", "b_delay_s", "service_runs")  # fmt: skip
    return {key: getattr(config, key) for key in keys}


def summarise(
    config: NoisyConfig,
    service: list[Sample],
    alone: tuple[list[Sample], float],
    flood: dict[str, Any],
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The part of results.json: every figure, the fairness and the verdicts."""
    window = flood["window"]
    a = _a_stats(flood["a"], window, flood["flood"])
    b = _b_stats(flood["b"], window[1] - window[0])
    b_alone = _b_stats(*alone)
    part: dict[str, Any] = {
        "kind": fairness.KIND,
        "url": config.url,
        "workload": _workload(config),
        "a_service": _service(service),
        "b_alone": b_alone,
        "flood": {
            "window_s": window[1] - window[0],
            "flood_s": flood["flood_s"],
            "capped": flood["capped"],
            "window_output_throughput": a["output_throughput"] + b["output_throughput"],
            "a": a,
            "b": b,
        },
        "fairness": _slots(flood),
        "fairness_rate": fairness.fairness(
            {"A": a["output_throughput"], "B": b["output_throughput"]},
            {"A": None, "B": b_alone["output_throughput"]},
        ),
        "baseline": baseline,
    }
    part["ratio"] = fairness.ttft_ratio(b["ttft_ms"]["p50"], part["a_service"]["median_ms"])
    part["verdicts"] = fairness.verdicts(part)
    return part


async def run_noisy(config: NoisyConfig, say: Progress = print) -> dict[str, Any]:
    """Service time, B alone, then the flood; returns the results part."""
    users = user_a, user_b = _users(config)
    started = time.time()
    baseline = load_baseline(config.baseline, config.model)
    salt = f"{random.getrandbits(32):08x}"
    async with client_session(config.a_streams + 4, config.timeout_s) as session:
        await _check_keys(session, users)
        say(f"[noisy] one A request alone, {config.service_runs} times")
        service: list[Sample] = []
        await _sequence(session, user_a, config.service_runs, f"s-{salt}", service)
        say(f"[noisy] B alone: {config.b_requests} requests")
        alone: list[Sample] = []
        alone_start = time.perf_counter()
        await _sequence(session, user_b, config.b_requests, f"i-{salt}", alone)
        alone_s = time.perf_counter() - alone_start
        say(f"[noisy] flood: A {config.a_streams} streams, B {config.b_requests} requests")
        flood = await _flood(session, users, config, say)
    part = summarise(config, service, (alone, alone_s), flood, baseline)
    part["started"] = started
    for line in part["verdicts"]:
        say(f"[noisy] {line}")
    return part

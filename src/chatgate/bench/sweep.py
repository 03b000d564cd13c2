"""One benchmark invocation: every target at every step, interleaved, with warm-up."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chatgate.bench.loadgen import (
    Budget,
    Target,
    Workload,
    client_session,
    poisson_arrivals,
    run_closed,
    run_open,
    send_request,
)
from chatgate.bench.stats import RequestResult, added, step_stats

DIRECT = "direct"
Progress = Callable[[str], None]


@dataclass
class SweepConfig:
    targets: list[Target]
    concurrency: list[int] = field(default_factory=lambda: [1, 5, 10, 32])
    request_rates: list[float] = field(default_factory=list)
    requests: int | None = 200
    duration_s: float | None = None
    workload: Workload = field(default_factory=Workload)
    warmup: int = 10
    seed: int = 0


def _open_count(config: SweepConfig, rate: float) -> int:
    if config.requests is not None:
        return config.requests
    assert config.duration_s is not None
    return max(1, round(rate * config.duration_s))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _line(step: str, name: str, stats: dict[str, Any]) -> str:
    ttft = stats["ttft_ms"]
    return (
        f"[bench] {step:>8} {name:<10} {stats['requests']:>5} req {stats['errors']:>3} err "
        f"{stats['request_throughput']:8.1f} req/s {stats['output_throughput']:9.1f} tok/s "
        f"TTFT p50 {_fmt(ttft['p50'])} ms p99 {_fmt(ttft['p99'])} ms"
    )


async def _warmup(
    sessions: dict[str, aiohttp.ClientSession], config: SweepConfig, say: Progress
) -> None:
    for target in config.targets:
        messages = [{"role": "user", "content": "warm up"}]
        failures = 0
        for _ in range(config.warmup):
            result, _ = await send_request(sessions[target.name], target, config.workload, messages)
            failures += not result.ok
        if failures:
            say(f"[bench] warm-up {target.name}: {failures}/{config.warmup} failed")


async def _one_step(
    session: aiohttp.ClientSession, target: Target, config: SweepConfig, mode: str, value: float
) -> dict[str, Any]:
    results: list[RequestResult]
    if mode == "closed":
        count = config.requests
        if count is not None:  # every session gets all its turns at least once
            count = max(count, int(value) * config.workload.multi_turn)
        budget = Budget(count, config.duration_s)
        results, wall = await run_closed(session, target, config.workload, int(value), budget)
    else:
        offsets = poisson_arrivals(value, _open_count(config, value), random.Random(config.seed))
        results, wall = await run_open(session, target, config.workload, offsets)
    return step_stats(results, wall)


def _added(per_target: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    direct = per_target.get(DIRECT)
    if direct is None:
        return {}
    return {
        name: {m: added(stats, direct, m) for m in ("ttft_ms", "e2e_ms", "itl_ms")}
        for name, stats in per_target.items()
        if name != DIRECT
    }


async def run_sweep(config: SweepConfig, say: Progress = print) -> dict[str, Any]:
    """Run every step for every target (the order rotates per step) and collect the stats."""
    plan: list[tuple[str, float]] = [("closed", c) for c in config.concurrency]
    plan += [("open", r) for r in config.request_rates]
    limit = max([*config.concurrency, *(int(r * 2) for r in config.request_rates), 64])
    timeout = config.workload.timeout_s
    sessions = {t.name: client_session(limit, timeout) for t in config.targets}
    steps: list[dict[str, Any]] = []
    started = time.time()
    try:
        if config.warmup:
            await _warmup(sessions, config, say)
        for index, (mode, value) in enumerate(plan):
            label = f"c={int(value)}" if mode == "closed" else f"{value:g}/s"
            shift = index % len(config.targets)
            order = config.targets[shift:] + config.targets[:shift]
            per_target: dict[str, dict[str, Any]] = {}
            for target in order:
                stats = await _one_step(sessions[target.name], target, config, mode, value)
                per_target[target.name] = stats
                say(_line(label, target.name, stats))
            ordered = {t.name: per_target[t.name] for t in config.targets}
            steps.append({"mode": mode, "value": value, "label": label,
                          "targets": ordered, "added": _added(ordered)})  # fmt: skip
    finally:
        for session in sessions.values():
            await session.close()
    return {
        "started": started,
        "targets": [{"name": t.name, "url": t.base_url} for t in config.targets],
        "workload": {
            "model": config.workload.model,
            "input_tokens": config.workload.input_tokens,
            "max_tokens": config.workload.max_tokens,
            "multi_turn": config.workload.multi_turn,
            "requests_per_step": config.requests,
            "duration_per_step_s": config.duration_s,
            "warmup": config.warmup,
        },
        "steps": steps,
    }

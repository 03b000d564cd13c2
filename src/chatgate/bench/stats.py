"""Statistics of one benchmark step: TTFT, TPOT, ITL, E2E and throughput.

Definitions follow ``vllm bench serve``: TTFT is the time to the first content chunk,
TPOT = (E2E - TTFT) / (output tokens - 1), ITL are the gaps between content chunks.
All times are seconds in; summaries are milliseconds out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 95, 99)


@dataclass
class RequestResult:
    """One request as the client saw it. ``chunk_times`` are seconds since the request start."""

    ok: bool
    e2e: float
    ttft: float | None = None
    chunk_times: list[float] = field(default_factory=list)
    output_tokens: int = 0
    prompt_tokens: int | None = None
    error: str | None = None


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation (numpy's default); None if empty."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def tpot(result: RequestResult) -> float | None:
    """Time per output token after the first; None without a TTFT or with < 2 tokens."""
    if result.ttft is None or result.output_tokens < 2:
        return None
    return (result.e2e - result.ttft) / (result.output_tokens - 1)


def itl(result: RequestResult) -> list[float]:
    """Gaps between consecutive content chunks."""
    times = result.chunk_times
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def summarize(values: Iterable[float], scale: float = 1000.0) -> dict[str, float | None]:
    """mean and p50/p95/p99 of ``values`` times ``scale`` (seconds -> ms by default)."""
    scaled = [v * scale for v in values]
    summary: dict[str, float | None] = {
        "mean": sum(scaled) / len(scaled) if scaled else None,
    }
    for q in PERCENTILES:
        summary[f"p{q}"] = percentile(scaled, q)
    return summary


def step_stats(results: Sequence[RequestResult], wall_seconds: float) -> dict[str, Any]:
    """Everything reported for one target at one step."""
    good = [r for r in results if r.ok]
    errors = len(results) - len(good)
    out_tokens = sum(r.output_tokens for r in good)
    gaps = [gap for r in good for gap in itl(r)]
    wall = max(wall_seconds, 1e-9)
    error_kinds: dict[str, int] = {}
    for r in results:
        if not r.ok:
            kind = r.error or "error"
            error_kinds[kind] = error_kinds.get(kind, 0) + 1
    return {
        "requests": len(results),
        "completed": len(good),
        "errors": errors,
        "error_rate": errors / len(results) if results else 0.0,
        "error_kinds": error_kinds,
        "duration_s": wall_seconds,
        "request_throughput": len(good) / wall,
        "output_throughput": out_tokens / wall,
        "output_tokens": out_tokens,
        "ttft_ms": summarize(r.ttft for r in good if r.ttft is not None),
        "tpot_ms": summarize(t for r in good if (t := tpot(r)) is not None),
        "itl_ms": summarize(gaps),
        "e2e_ms": summarize(r.e2e for r in good),
    }


def added(target: dict[str, Any], direct: dict[str, Any], metric: str) -> dict[str, float | None]:
    """Per-percentile difference of ``metric`` (e.g. ``ttft_ms``) between a target and direct."""
    mine, base = target[metric], direct[metric]
    return {
        key: (mine[key] - base[key]) if mine[key] is not None and base[key] is not None else None
        for key in mine
    }

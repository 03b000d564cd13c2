"""Statistics on synthetic timings: no clock involved."""

from __future__ import annotations

import pytest

from chatgate.bench.stats import (
    RequestResult,
    added,
    itl,
    percentile,
    step_stats,
    summarize,
    tpot,
)


def test_percentile_interpolates_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input


def test_percentile_edge_cases() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_tpot_is_decode_time_per_token_after_the_first() -> None:
    result = RequestResult(ok=True, e2e=1.0, ttft=0.2, output_tokens=5)
    assert tpot(result) == pytest.approx((1.0 - 0.2) / 4)


def test_tpot_undefined_for_one_token_or_no_ttft() -> None:
    assert tpot(RequestResult(ok=True, e2e=1.0, ttft=0.5, output_tokens=1)) is None
    assert tpot(RequestResult(ok=False, e2e=1.0, ttft=None, output_tokens=4)) is None


def test_itl_are_gaps_between_chunks() -> None:
    result = RequestResult(ok=True, e2e=0.5, ttft=0.1, chunk_times=[0.1, 0.15, 0.3, 0.31])
    assert itl(result) == pytest.approx([0.05, 0.15, 0.01])
    assert itl(RequestResult(ok=True, e2e=0.1, chunk_times=[0.1])) == []


def test_summarize_scales_to_milliseconds() -> None:
    summary = summarize([0.001, 0.002, 0.003])
    assert summary["mean"] == pytest.approx(2.0)
    assert summary["p50"] == pytest.approx(2.0)
    assert summary["p99"] == pytest.approx(2.98)
    assert summarize([]) == {"mean": None, "p50": None, "p95": None, "p99": None}


def _ok(ttft: float, e2e: float, tokens: int) -> RequestResult:
    step = (e2e - ttft) / max(tokens - 1, 1)
    times = [ttft + i * step for i in range(tokens)]
    return RequestResult(ok=True, e2e=e2e, ttft=ttft, chunk_times=times, output_tokens=tokens)


def test_step_stats_counts_throughput_and_errors() -> None:
    results = [
        _ok(0.1, 0.5, 5),
        _ok(0.2, 1.0, 9),
        RequestResult(ok=False, e2e=0.01, error="HTTP 429"),
    ]
    stats = step_stats(results, wall_seconds=2.0)
    assert stats["requests"] == 3
    assert stats["completed"] == 2
    assert stats["errors"] == 1
    assert stats["error_rate"] == pytest.approx(1 / 3)
    assert stats["error_kinds"] == {"HTTP 429": 1}
    assert stats["request_throughput"] == pytest.approx(1.0)
    assert stats["output_throughput"] == pytest.approx(14 / 2.0)
    assert stats["ttft_ms"]["p50"] == pytest.approx(150.0)
    assert stats["tpot_ms"]["mean"] == pytest.approx(100.0)  # both are 0.1 s per token
    assert stats["itl_ms"]["p50"] == pytest.approx(100.0)
    assert stats["e2e_ms"]["p99"] == pytest.approx(995.0)


def test_added_latency_is_target_minus_direct() -> None:
    direct = step_stats([_ok(0.010, 0.020, 2)], 1.0)
    gateway = step_stats([_ok(0.012, 0.025, 2)], 1.0)
    extra = added(gateway, direct, "ttft_ms")
    assert extra["p50"] == pytest.approx(2.0)
    empty = step_stats([], 1.0)
    assert added(empty, direct, "ttft_ms")["p50"] is None

"""The load generator: target parsing, Poisson arrivals, budgets, and a short real run
against the in-process fast upstream (counts and error handling, never timings)."""

from __future__ import annotations

import random
import statistics
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chatgate.bench import upstream
from chatgate.bench.loadgen import (
    Budget,
    Target,
    Workload,
    client_session,
    make_prompt,
    parse_target,
    poisson_arrivals,
    run_closed,
    run_open,
    send_request,
)
from chatgate.bench.report import markdown, plot
from chatgate.bench.sweep import SweepConfig, run_sweep


def test_parse_target_with_and_without_key() -> None:
    assert parse_target("direct=http://127.0.0.1:9100") == Target(
        "direct", "http://127.0.0.1:9100/v1", None
    )
    assert parse_target("cg=http://127.0.0.1:8080/v1/@sk-cg-abc") == Target(
        "cg", "http://127.0.0.1:8080/v1", "sk-cg-abc"
    )
    with pytest.raises(ValueError):
        parse_target("no-equals-sign")


def test_prompt_length_and_tag() -> None:
    prompt = make_prompt(2000, "s-1")
    assert prompt.startswith("s-1 ")
    assert len(prompt.split()) == 2000


def test_poisson_arrivals_mean_rate_with_seeded_rng() -> None:
    rate = 200.0
    offsets = poisson_arrivals(rate, 20_000, random.Random(42))
    assert offsets == sorted(offsets)
    assert len(offsets) / offsets[-1] == pytest.approx(rate, rel=0.03)
    gaps = [b - a for a, b in zip([0.0, *offsets], offsets, strict=False)]
    # exponential gaps: standard deviation equals the mean
    assert statistics.stdev(gaps) == pytest.approx(statistics.mean(gaps), rel=0.05)


def test_poisson_arrivals_reproducible_and_validated() -> None:
    assert poisson_arrivals(50, 10, random.Random(1)) == poisson_arrivals(50, 10, random.Random(1))
    with pytest.raises(ValueError):
        poisson_arrivals(0, 10, random.Random(1))


def test_budget_by_count() -> None:
    budget = Budget(3, None)
    assert [budget.take() for _ in range(5)] == [True, True, True, False, False]
    with pytest.raises(ValueError):
        Budget(None, None)


def test_budget_by_expired_duration() -> None:
    assert Budget(None, 0.0).take() is False


@pytest_asyncio.fixture
async def fast_url() -> AsyncIterator[str]:
    runner, port = await upstream.start(chunks=8)
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_closed_loop_counts_tokens_and_turns(fast_url: str) -> None:
    target = Target("direct", fast_url)
    workload = Workload(model="fast", input_tokens=20, max_tokens=4, multi_turn=3)
    async with client_session(4, 10) as session:
        results, wall = await run_closed(session, target, workload, 4, Budget(25, None))
    assert len(results) == 25
    assert wall > 0
    assert all(r.ok and r.error is None for r in results)
    assert all(r.output_tokens == 4 and len(r.chunk_times) == 4 for r in results)
    assert all(r.ttft is not None and r.ttft <= r.e2e for r in results)


async def test_multi_turn_context_grows(fast_url: str) -> None:
    target = Target("direct", fast_url)
    workload = Workload(model="fast", input_tokens=10, max_tokens=2, multi_turn=3)
    async with client_session(1, 10) as session:
        results, _ = await run_closed(session, target, workload, 1, Budget(3, None))
    prompts = [r.prompt_tokens or 0 for r in results]
    assert prompts[0] == 10
    assert prompts[0] < prompts[1] < prompts[2]  # previous answers and follow-ups are sent


async def test_open_loop_sends_every_arrival(fast_url: str) -> None:
    offsets = poisson_arrivals(2000, 20, random.Random(3))  # ~10 ms in all
    async with client_session(32, 10) as session:
        results, _ = await run_open(session, Target("direct", fast_url), Workload(), offsets)
    assert len(results) == 20
    assert all(r.ok for r in results)


async def test_errors_are_counted_not_raised(fast_url: str) -> None:
    workload = Workload(max_tokens=2)
    async with client_session(2, 5) as session:
        missing, _ = await send_request(session, Target("x", fast_url + "/nope"), workload, [])
        refused, _ = await send_request(session, Target("y", "http://127.0.0.1:1/v1"), workload, [])
    assert not missing.ok and missing.error == "HTTP 404"
    assert not refused.ok and refused.error is not None


async def test_sweep_reports_added_latency_and_errors(fast_url: str, tmp_path: Path) -> None:
    config = SweepConfig(
        targets=[Target("direct", fast_url), Target("broken", "http://127.0.0.1:1/v1")],
        concurrency=[1, 3],
        request_rates=[500],
        requests=6,
        workload=Workload(model="fast", max_tokens=3),
        warmup=1,
    )
    lines: list[str] = []
    sweep = await run_sweep(config, lines.append)
    assert [s["label"] for s in sweep["steps"]] == ["c=1", "c=3", "500/s"]
    for step in sweep["steps"]:
        assert step["targets"]["direct"]["completed"] == 6
        assert step["targets"]["broken"]["errors"] == 6
        assert step["targets"]["broken"]["error_rate"] == 1.0
        assert set(step["added"]) == {"broken"}
    assert any("warm-up broken" in line for line in lines)
    table = markdown({"fast": sweep})
    assert table.count("| c=3 |") == 2
    assert "+TTFT p50" in table


def test_plot_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    stats = {
        "ttft_ms": {"p50": 1.0, "p99": 2.0},
        "output_throughput": 10.0,
    }
    sweep = {
        "targets": [{"name": "direct"}],
        "steps": [{"mode": "closed", "value": c, "targets": {"direct": stats}} for c in (1, 5)],
    }
    path = tmp_path / "p.png"
    assert plot({"a": sweep}, path)
    assert path.read_bytes()[:4] == b"\x89PNG"

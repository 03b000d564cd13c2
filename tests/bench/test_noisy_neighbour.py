"""The noisy-neighbour workload: its statistics on synthetic numbers (Jain's index with
unequal demand, the TTFT ratio, percentiles, tokens in a window, the verdicts), and short
real runs against the fast upstream (counts, cancellation and the time cap, never timings)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from typer.testing import CliRunner

from chatgate.bench import upstream
from chatgate.bench.cli import bench_app
from chatgate.bench.fairness import (
    KIND,
    baseline_throughput,
    fairness,
    jain_index,
    max_min_shares,
    mean_concurrency,
    overlap,
    tokens_in_window,
    ttft_ratio,
    ttft_summary,
    verdicts,
)
from chatgate.bench.noisy import NoisyConfig, run_noisy
from chatgate.bench.report import markdown, write_all

# --- Jain's index and max-min fair shares -----------------------------------------------


def test_jain_index_bounds() -> None:
    assert jain_index([5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain_index([9.0, 0.0, 0.0]) == pytest.approx(1 / 3)  # one user gets everything
    assert jain_index([1.0, 3.0]) == pytest.approx(16 / 20)  # (1+3)^2 / (2 * (1+9))
    assert jain_index([]) is None
    assert jain_index([0.0, 0.0]) is None


def test_max_min_shares_light_user_gets_its_demand_heavy_user_the_rest() -> None:
    assert max_min_shares(100.0, {"A": None, "B": 10.0}) == {"A": 90.0, "B": 10.0}


def test_max_min_shares_equal_split_when_both_want_more() -> None:
    assert max_min_shares(100.0, {"A": None, "B": 70.0}) == {"A": 50.0, "B": 50.0}


def test_max_min_shares_water_fills_in_rounds() -> None:
    # 90 over 3: C (10) fits a third; the 80 left over 2 = 40: B (30) fits; A gets 50.
    shares = max_min_shares(90.0, {"A": None, "B": 30.0, "C": 10.0})
    assert shares == pytest.approx({"A": 50.0, "B": 30.0, "C": 10.0})


def test_max_min_shares_everyone_satisfied_below_capacity() -> None:
    assert max_min_shares(100.0, {"A": 20.0, "B": 10.0}) == {"A": 20.0, "B": 10.0}


def test_fairness_does_not_punish_b_for_asking_less() -> None:
    # B asks for 10 tok/s and gets it, A takes the other 90: perfectly fair.
    result = fairness({"A": 90.0, "B": 10.0}, {"A": None, "B": 10.0})
    assert result["capacity"] == 100.0
    assert result["users"]["B"]["fair_share"] == 10.0
    assert result["users"]["A"]["normalised"] == pytest.approx(1.0)
    assert result["jain"] == pytest.approx(1.0)
    # Jain over the raw throughputs would call the same split unfair:
    assert jain_index([90.0, 10.0]) == pytest.approx(0.61, abs=0.01)


def test_fairness_catches_a_starved_b() -> None:
    # B asked for 10 but got 1 (waiting behind A's flood); A got 99.
    result = fairness({"A": 99.0, "B": 1.0}, {"A": None, "B": 10.0})
    users = result["users"]
    assert users["B"]["normalised"] == pytest.approx(0.1)
    assert users["A"]["normalised"] == pytest.approx(1.1)
    expected = (0.1 + 1.1) ** 2 / (2 * (0.1**2 + 1.1**2))
    assert result["jain"] == pytest.approx(expected)
    assert result["jain"] < 0.9


def test_fairness_b_wanting_more_than_half_is_owed_half() -> None:
    result = fairness({"A": 60.0, "B": 40.0}, {"A": None, "B": 80.0})
    assert result["users"]["B"]["fair_share"] == 50.0
    assert result["users"]["B"]["normalised"] == pytest.approx(0.8)
    assert 0.9 < result["jain"] < 1.0


def test_fairness_without_throughput() -> None:
    result = fairness({"A": 0.0, "B": 0.0}, {"A": None, "B": 10.0})
    assert result["jain"] is None
    assert result["users"]["B"]["normalised"] is None


# --- the TTFT ratio and percentiles -------------------------------------------------------


def test_ttft_summary_uses_interpolated_percentiles_in_ms() -> None:
    ttfts = [float(s) for s in range(1, 11)]  # 1..10 s
    summary = ttft_summary(ttfts)
    assert summary["p50"] == pytest.approx(5500.0)
    assert summary["p90"] == pytest.approx(9100.0)  # 9 + 0.1 * (10 - 9), interpolated
    assert summary["max"] == pytest.approx(10000.0)
    assert ttft_summary([]) == {"p50": None, "p90": None, "max": None}


def test_ttft_ratio() -> None:
    assert ttft_ratio(1200.0, 1000.0) == pytest.approx(1.2)
    assert ttft_ratio(None, 1000.0) is None
    assert ttft_ratio(500.0, None) is None
    assert ttft_ratio(500.0, 0.0) is None


def test_overlap_and_mean_concurrency() -> None:
    assert overlap((1.0, 3.0), (2.0, 10.0)) == 1.0
    assert overlap((1.0, 3.0), (4.0, 10.0)) == 0.0
    # two requests over a 10 s window: one for 5 s, one for all of it -> 1.5 on average
    assert mean_concurrency([(0.0, 5.0), (-1.0, 20.0)], (0.0, 10.0)) == pytest.approx(1.5)
    assert mean_concurrency([(0.0, 5.0)], (3.0, 3.0)) == 0.0


def test_slot_fairness_tells_fcfs_from_a_fair_queue() -> None:
    # B wants one slot all along. First come, first served: it waits behind A's queue and
    # holds a slot 3 % of the time while A holds all 5; a fair queue gives B its slot at
    # once (held 90 % of the time: its first token is not counted as held) and A the rest.
    fcfs = fairness({"A": 4.97, "B": 0.03}, {"A": 15.0, "B": 1.0})
    fair = fairness({"A": 4.0, "B": 0.9}, {"A": 15.0, "B": 1.0})
    assert fcfs["users"]["B"]["fair_share"] == pytest.approx(1.0)
    assert fcfs["jain"] < 0.6
    assert fair["jain"] > 0.95


def test_tokens_in_window_counts_chunks_and_scales_by_usage() -> None:
    chunks = [0.1, 0.2, 0.3, 0.4]  # seconds after a start at t=10
    assert tokens_in_window(10.0, chunks, 4, (10.0, 20.0)) == 4
    assert tokens_in_window(10.0, chunks, 4, (10.15, 10.35)) == 2
    assert tokens_in_window(10.0, chunks, 8, (10.15, 10.35)) == 4  # 2 tokens per chunk
    assert tokens_in_window(10.0, chunks, 0, (10.15, 10.35)) == 2  # cancelled: no usage
    assert tokens_in_window(10.0, [], 0, (0.0, 99.0)) == 0


# --- verdicts, baseline and the report ----------------------------------------------------


def part(
    b_p50: float = 900.0,
    service: float = 1000.0,
    a_tps: float = 100.0,
    jain: float | None = 0.95,
    baseline: dict[str, Any] | None = None,
) -> dict[str, Any]:
    ttft = {"p50": b_p50, "p90": b_p50 * 2, "max": b_p50 * 3}
    b = {"requests": 10, "errors": 0, "ttft_ms": ttft, "output_throughput": 5.0}
    alone = {"requests": 10, "errors": 0, "ttft_ms": {"p50": 50.0, "p90": 60.0, "max": 70.0}}
    data: dict[str, Any] = {
        "kind": KIND,
        "url": "http://127.0.0.1:1/v1",
        "workload": {
            "model": "m",
            "a_streams": 16,
            "a_max_tokens": 200,
            "b_requests": 10,
            "b_max_tokens": 16,
            "b_delay_s": 1.0,
        },
        "a_service": {"runs_ms": [service] * 3, "median_ms": service, "mean_tokens": 200.0},
        "b_alone": alone,
        "flood": {
            "window_s": 30.0,
            "capped": False,
            "b": b,
            "a": {
                "requests": 40,
                "completed": 24,
                "errors": 0,
                "cancelled": 16,
                "output_throughput": a_tps * 0.8,
                "flood_output_throughput": a_tps,
            },
            "flood_s": 60.0,
            "window_output_throughput": a_tps * 0.8 + 5.0,
        },
        "fairness": {
            "jain": jain,
            "users": fairness({"A": 3.9, "B": 0.9}, {"A": 15.0, "B": 1.0})["users"],
        },
        "fairness_rate": fairness({"A": a_tps, "B": 5.0}, {"A": None, "B": 6.0}),
        "baseline": baseline,
        "ratio": ttft_ratio(b_p50, service),
    }
    data["verdicts"] = verdicts(data)
    return data


def test_verdicts_met() -> None:
    lines = part(baseline={"file": "x", "a_output_throughput": 104.0})["verdicts"]
    assert [line.split(":")[0] for line in lines] == ["MET", "MET", "MET"]
    assert "0.90x" in lines[0]
    assert "-3.8%" in lines[1]


def test_verdicts_missed() -> None:
    lines = part(b_p50=1300.0, a_tps=90.0, jain=0.5,
                 baseline={"file": "x", "a_output_throughput": 100.0})["verdicts"]  # fmt: skip
    assert [line.split(":")[0] for line in lines] == ["MISSED", "MISSED", "MISSED"]
    # within 5 % means either way
    faster = part(a_tps=106.0, baseline={"file": "x", "a_output_throughput": 100.0})
    assert faster["verdicts"][1].startswith("MISSED")


def test_verdicts_without_baseline_or_measurements() -> None:
    lines = part(jain=None)["verdicts"]
    assert lines[1].startswith("NOT JUDGED") and "no baseline" in lines[1]
    assert lines[2].startswith("NOT MEASURED")
    empty = part(baseline={"file": "old.json", "a_output_throughput": None})
    assert "old.json has no noisy-neighbour" in empty["verdicts"][1]


def test_baseline_picks_the_same_model(tmp_path: Path) -> None:
    one, two = part(a_tps=50.0), part(a_tps=70.0)
    two["workload"] = {**two["workload"], "model": "vllm"}
    sweep: dict[str, Any] = {"steps": [], "workload": {}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"parts": {"(a)": sweep, "(c) 1": one, "(c) 2": two}}))
    assert baseline_throughput(path, "vllm") == 70.0
    assert baseline_throughput(path, "m") == 50.0
    assert baseline_throughput(path, "other") == 50.0  # the first noisy part
    path.write_text(json.dumps({"parts": {"(a)": sweep}}))
    assert baseline_throughput(path) is None


def test_report_section_and_files(tmp_path: Path) -> None:
    data = part(baseline={"file": "x", "a_output_throughput": 100.0})
    text = markdown({"(c) noisy neighbour": data})
    assert "### (c) noisy neighbour" in text
    assert "| beside A's flood | 10 | 0 | 900 | 1800 | 2700 |" in text
    assert "| B | 0.90 | 1.00 | 1.00 | 0.90 |" in text  # slots held / wanted / fair
    assert "| B | 5.0 | 6.0 |" in text  # tokens/s, for context
    assert "Flood: 60.0 s; window" in text
    assert "- MET: B TTFT p50 900 ms = 0.90x" in text
    notes: list[str] = []
    write_all(tmp_path, {"noisy": data}, notes)
    assert json.loads((tmp_path / "results.json").read_text())["parts"]["noisy"]["kind"] == KIND
    assert not (tmp_path / "results.png").exists()  # no sweep to plot
    assert notes == []


# --- short real runs against the fast upstream --------------------------------------------


@pytest_asyncio.fixture
async def slow_url() -> AsyncIterator[str]:
    """A fake engine with 5 ms between tokens, so A's requests are still running at the end."""
    runner, port = await upstream.start(chunks=200, delay_ms=5)
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_short_run_ends_by_itself(slow_url: str) -> None:
    config = NoisyConfig(slow_url, "sk-a", "sk-b", model="fast", a_streams=4, a_max_tokens=40,
                         b_requests=3, b_max_tokens=4, duration_s=10, b_delay_s=0.1)  # fmt: skip
    started = time.perf_counter()
    result = await run_noisy(config, lambda _: None)
    assert time.perf_counter() - started < 8
    assert result["a_service"]["mean_tokens"] == 40 and len(result["a_service"]["runs_ms"]) == 3
    alone, b, a = result["b_alone"], result["flood"]["b"], result["flood"]["a"]
    assert alone["completed"] == 3 and b["completed"] == 3 and b["unfinished"] == 0
    assert b["output_tokens"] == 12 and b["ttft_ms"]["p50"] is not None
    assert not result["flood"]["capped"]
    assert a["requests"] >= 4 and a["errors"] == 0
    assert a["cancelled"] == 4  # every A worker had a request in flight when B was done
    assert a["output_throughput"] > 0 and a["flood_output_throughput"] > 0
    rate, slots = result["fairness_rate"], result["fairness"]
    assert rate["users"]["A"]["demand"] is None
    assert rate["users"]["B"]["demand"] == pytest.approx(alone["output_throughput"])
    assert 0.5 <= rate["jain"] <= 1.0
    # A kept its 4 streams outstanding; B one request at a time (a fake engine admits all)
    assert slots["users"]["A"]["demand"] == pytest.approx(4.0, abs=0.5)
    assert 0.5 <= slots["users"]["B"]["demand"] <= 1.0
    assert 0.5 <= slots["jain"] <= 1.0
    assert result["ratio"] == pytest.approx(b["ttft_ms"]["p50"] / result["a_service"]["median_ms"])
    assert len(result["verdicts"]) == 3 and "no baseline" in result["verdicts"][1]


async def test_flood_lasts_its_length_after_b(slow_url: str) -> None:
    config = NoisyConfig(slow_url, "sk-a", "sk-b", model="fast", a_streams=2, a_max_tokens=40,
                         b_requests=1, b_max_tokens=4, duration_s=10, flood_s=1.5,
                         b_delay_s=0.1, service_runs=1)  # fmt: skip
    result = await run_noisy(config, lambda _: None)
    flood = result["flood"]
    assert flood["flood_s"] >= 1.5 and flood["window_s"] < flood["flood_s"]
    assert result["workload"]["flood_s"] == 1.5
    assert flood["a"]["completed"] >= 2  # A went on after B's one request


async def test_time_cap_stops_b_and_a(slow_url: str) -> None:
    # B's one request takes ~1 s; the cap cuts it after its first tokens.
    config = NoisyConfig(slow_url, "sk-a", "sk-b", model="fast", a_streams=2, a_max_tokens=40,
                         b_requests=1, b_max_tokens=200, duration_s=0.6, b_delay_s=0.1,
                         service_runs=1)  # fmt: skip
    result = await run_noisy(config, lambda _: None)
    flood = result["flood"]
    assert flood["capped"] and flood["flood_s"] < 1.5
    assert flood["b"]["unfinished"] == 1 and flood["b"]["ttft_censored"] == 0
    assert flood["b"]["ttft_ms"]["p50"] is not None  # its first token had come
    assert flood["a"]["cancelled"] == 2


async def test_wrong_url_fails_before_measuring(slow_url: str) -> None:
    config = NoisyConfig(slow_url + "/nope", "sk-a", "sk-b", a_streams=1, b_requests=1)
    with pytest.raises(RuntimeError, match="user A: HTTP 404"):
        await run_noisy(config, lambda _: None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def upstream_process() -> Iterator[str]:
    port = _free_port()
    argv = [sys.executable, "-m", "chatgate.bench.cli", "upstream", "--port", str(port),
            "--chunks", "20", "--delay-ms", "2"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_writes_results_and_judges_a_baseline(upstream_process: str, tmp_path: Path) -> None:
    baseline = tmp_path / "before.json"
    baseline.write_text(json.dumps({"parts": {"x": part(a_tps=1e6)}}))
    args = ["noisy-neighbour", "--url", upstream_process, "--key-a", "sk-a", "--key-b", "sk-b",
            "--model", "fast", "--a-streams", "3", "--a-max-tokens", "20", "--b-requests", "2",
            "--b-max-tokens", "4", "--b-delay", "0.1", "--duration", "10",
            "--flood-seconds", "0.5",
            "--baseline", str(baseline), "--out", str(tmp_path / "out")]  # fmt: skip
    result = CliRunner().invoke(bench_app, args)
    assert result.exit_code == 0, result.output
    assert "### noisy-neighbour" in result.stdout
    assert "MISSED: A output over the flood" in result.stdout  # below the made-up baseline
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["parts"]["noisy-neighbour"]["baseline"]["a_output_throughput"] == 1e6
    assert (tmp_path / "out" / "results.md").read_text().startswith("### noisy-neighbour")

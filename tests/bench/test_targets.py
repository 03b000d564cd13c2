"""The issue-6 verdicts computed from a suite's results."""

from __future__ import annotations

from typing import Any

from chatgate.bench.targets import check


def target(rps: float, out_tps: float = 0.0, requests: int = 10, errors: int = 0) -> dict[str, Any]:
    seconds = 10.0
    return {
        "request_throughput": rps,
        "output_throughput": out_tps,
        "output_tokens": out_tps * seconds,
        "duration_s": seconds,
        "requests": requests,
        "errors": errors,
    }


def step(
    label: str, targets: dict[str, Any], added: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"label": label, "targets": targets, "added": added or {}}


def added(p50: float, p99: float) -> dict[str, Any]:
    return {"ttft_ms": {"p50": p50, "p99": p99}}


def overhead(chatgate_rps: float) -> dict[str, Any]:
    return {
        "steps": [
            step("c=1", {"chatgate": target(400)}, {"chatgate": added(0.5, 0.9)}),
            step(
                "c=32",
                {"relay": target(1000), "chatgate": target(chatgate_rps), "litellm": target(50)},
            ),
            step("200/s", {"chatgate": target(195)}, {"chatgate": added(1.0, 4.0)}),
        ]
    }


def engine(chatgate_rps: float, direct_rps: float, errors: int = 0) -> dict[str, Any]:
    return {
        "steps": [
            step("c=1", {"direct": target(0.2, 6.0), "chatgate": target(0.2, 5.9)}),
            step(
                "c=5",
                {
                    "direct": target(direct_rps, 30.0),
                    "chatgate": target(chatgate_rps, 29.0, errors=errors),
                },
            ),
        ]
    }


def test_overhead_targets_met_and_missed() -> None:
    lines = check({"(a) overhead": overhead(700)})
    assert lines[0].startswith("MET: added TTFT p50 at c=1 0.50 ms")
    assert any(line.startswith("MET:") and "14.0x LiteLLM" in line for line in lines)
    assert any(line.startswith("MET:") and "70%" in line.replace(" %", "%") for line in lines)
    missed = check({"(a) overhead": overhead(500)})
    assert any(line.startswith("MISSED:") and "bare relay" in line for line in missed)


def test_every_engine_workload_is_judged_on_its_own() -> None:
    lines = check(
        {
            "(b) engine, 2k-token prompts": engine(chatgate_rps=0.15, direct_rps=0.16),
            "(b) engine, chat sessions": engine(chatgate_rps=1.0, direct_rps=1.0, errors=1),
        }
    )
    long_context = [line for line in lines if "2k-token" in line]
    chat = [line for line in lines if "chat sessions" in line]
    assert len(long_context) == len(chat) == 3
    assert any(
        line.startswith("MISSED:") and "9 req/min" in line and "engine direct: 10" in line
        for line in long_context
    )
    assert any(line.startswith("MET:") and "60 req/min" in line for line in chat)
    assert any(line.startswith("MISSED:") and "chatgate 1/20" in line for line in chat)
    ratios = [line for line in lines if "output tokens/s" in line]
    assert len(ratios) == 2
    assert all(
        line.startswith("MET:") and "97% of direct over all steps (per step: 98%, 97%)" in line
        for line in ratios
    )


def test_the_engine_ratio_counts_every_step_by_its_tokens_and_time() -> None:
    sweep = engine(chatgate_rps=1.0, direct_rps=1.0)
    slow, fast = sweep["steps"]
    slow["targets"]["chatgate"] = target(0.2, 5.0)  # one noisy step of few tokens: 83 %
    fast["targets"]["chatgate"] = target(1.0, 30.0)
    fast["targets"]["direct"] = target(1.0, 30.0)
    [ratio] = [line for line in check({"(b) x": sweep}) if "tokens/s" in line]
    assert ratio.startswith("MET:") and "97% of direct over all steps" in ratio

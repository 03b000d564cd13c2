"""The targets of issue 6, checked against a suite's results: one line each, MET or MISSED."""

from __future__ import annotations

from typing import Any

PART_A = "(a)"
PART_B = "(b)"


def _step(sweep: dict[str, Any], label: str) -> dict[str, Any] | None:
    return next((s for s in sweep["steps"] if s["label"] == label), None)


def _verdict(ok: bool, text: str) -> str:
    return f"{'MET' if ok else 'MISSED'}: {text}"


def _overhead(sweep: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    c1, c32, r200 = _step(sweep, "c=1"), _step(sweep, "c=32"), _step(sweep, "200/s")
    if c1 and "chatgate" in c1["added"]:
        extra = c1["added"]["chatgate"]["ttft_ms"]["p50"]
        lines.append(
            _verdict(
                extra is not None and extra <= 2,
                f"added TTFT p50 at c=1 {extra:.2f} ms (target <= 2 ms)",
            )
        )
    if c32 and "chatgate" in c32["targets"]:
        rps = {n: s["request_throughput"] for n, s in c32["targets"].items()}
        if "litellm" in rps:
            ratio = rps["chatgate"] / max(rps["litellm"], 1e-9)
            lines.append(
                _verdict(
                    ratio >= 10,
                    f"c=32 chatgate {rps['chatgate']:.0f} req/s = "
                    f"{ratio:.1f}x LiteLLM's {rps['litellm']:.0f} (target >= 10x)",
                )
            )
        else:
            lines.append("NOT MEASURED: c=32 chatgate vs LiteLLM (LiteLLM unavailable)")
        share = rps["chatgate"] / max(rps.get("relay", 0.0), 1e-9)
        lines.append(
            _verdict(
                share >= 0.6,
                f"c=32 chatgate = {share:.0%} of the bare relay's "
                f"{rps.get('relay', 0):.0f} req/s (target >= 60 %)",
            )
        )
    if r200 and "chatgate" in r200["added"]:
        extra = r200["added"]["chatgate"]["ttft_ms"]["p99"]
        errors = r200["targets"]["chatgate"]["errors"]
        ok = extra is not None and extra <= 10 and errors == 0
        lines.append(
            _verdict(
                ok,
                f"open loop 200/s: added TTFT p99 {extra:.1f} ms, "
                f"{errors} errors (target <= 10 ms, 0 errors)",
            )
        )
    return lines


def _engine(sweep: dict[str, Any], workload: str) -> list[str]:
    """The engine targets for one part-(b) workload (named in every line)."""
    lines: list[str] = []
    ratios = []
    totals = {"direct": [0.0, 0.0], "chatgate": [0.0, 0.0]}  # output tokens, seconds
    for step in sweep["steps"]:
        t = step["targets"]
        if "direct" in t and "chatgate" in t:
            ratios.append(
                t["chatgate"]["output_throughput"] / max(t["direct"]["output_throughput"], 1e-9)
            )
            for name, total in totals.items():
                total[0] += t[name].get("output_tokens", 0)
                total[1] += t[name].get("duration_s", 0.0)
    if ratios:
        # Over all steps: a step of 10 engine requests moves by several percent on its own
        # (which request met a busy moment), the per-step ratios are shown beside it.
        rate = {name: tokens / max(seconds, 1e-9) for name, (tokens, seconds) in totals.items()}
        overall = rate["chatgate"] / max(rate["direct"], 1e-9)
        lines.append(
            _verdict(
                overall >= 0.95,
                f"{workload}: engine through chatgate: output tokens/s {overall:.0%} of direct"
                " over all steps (per step: "
                + ", ".join(f"{r:.0%}" for r in ratios)
                + ") (target >= 95 %)",
            )
        )
    c5 = _step(sweep, "c=5")
    if c5 and "chatgate" in c5["targets"]:
        rpm = c5["targets"]["chatgate"]["request_throughput"] * 60
        direct = c5["targets"].get("direct")
        engine_rpm = f" (engine direct: {direct['request_throughput'] * 60:.0f})" if direct else ""
        lines.append(
            _verdict(
                rpm >= 30,
                f"{workload}: {rpm:.0f} req/min at 5 sessions through chatgate{engine_rpm}"
                " (target >= 30)",
            )
        )
    stats = [s["targets"]["chatgate"] for s in sweep["steps"] if "chatgate" in s["targets"]]
    total = sum(s["requests"] for s in stats)
    errors = sum(s["errors"] for s in stats)
    if total:
        lines.append(
            _verdict(
                errors / total < 0.01,
                f"{workload}: engine errors through chatgate {errors}/{total} (target < 1 %)",
            )
        )
    return lines


def check(parts: dict[str, dict[str, Any]]) -> list[str]:
    """Part (a): the overhead targets; each part-(b) workload: the engine targets."""
    lines: list[str] = []
    for title, sweep in parts.items():
        if title.startswith(PART_A):
            lines += _overhead(sweep)
        elif title.startswith(PART_B):
            lines += _engine(sweep, title)
    return lines

"""Benchmark reports: JSON (everything), Markdown (the tables) and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chatgate.bench import fairness

HEADER = (
    "| step | target | req | err | req/s | out tok/s | TTFT p50 | TTFT p99 | +TTFT p50 | +TTFT p99 "
    "| TPOT p50 | ITL p99 | E2E p50 | E2E p99 |"
)
RULE = "|" + "---|" * 14


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    if abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def _row(step: dict[str, Any], name: str) -> str:
    s = step["targets"][name]
    extra = step["added"].get(name, {}).get("ttft_ms", {})
    cells = [
        step["label"], name, str(s["requests"]), str(s["errors"]),
        f"{s['request_throughput']:.1f}", f"{s['output_throughput']:.0f}",
        _ms(s["ttft_ms"]["p50"]), _ms(s["ttft_ms"]["p99"]),
        _ms(extra.get("p50")), _ms(extra.get("p99")),
        _ms(s["tpot_ms"]["p50"]), _ms(s["itl_ms"]["p99"]),
        _ms(s["e2e_ms"]["p50"]), _ms(s["e2e_ms"]["p99"]),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def markdown_table(sweep: dict[str, Any]) -> str:
    """One row per step and target; times in ms; ``+`` columns are target minus ``direct``."""
    lines = [HEADER, RULE]
    for step in sweep["steps"]:
        lines += [_row(step, name) for name in step["targets"]]
    return "\n".join(lines)


def markdown(parts: dict[str, dict[str, Any]], notes: list[str] | None = None) -> str:
    out: list[str] = []
    for title, sweep in parts.items():
        if sweep.get("kind") == fairness.KIND:  # not a sweep: its own section and targets
            out.append(fairness.markdown_section(title, sweep))
            continue
        w = sweep["workload"]
        out.append(f"### {title}\n")
        per_step = (
            f"{w['requests_per_step']} requests"
            if w["requests_per_step"]
            else f"{w['duration_per_step_s']} s"
        )
        out.append(
            f"model `{w['model']}`, ~{w['input_tokens']} input tokens,"
            f" max_tokens {w['max_tokens']}, {w['multi_turn']} turn(s) per session,"
            f" {per_step} per step and target. Times in ms; `+TTFT` = target minus `direct`.\n"
        )
        out.append(markdown_table(sweep) + "\n")
    if notes:
        out.append("\n".join(f"- {n}" for n in notes) + "\n")
    return "\n".join(out)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def plot(parts: dict[str, dict[str, Any]], path: Path) -> bool:
    """TTFT p50/p99 and output tokens/s against concurrency for all targets; False without
    matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(parts), 2, figsize=(12, 4.5 * len(parts)), squeeze=False)
    for row, (title, sweep) in enumerate(parts.items()):
        closed = [s for s in sweep["steps"] if s["mode"] == "closed"]
        ax_ttft, ax_tput = axes[row]
        for target in (t["name"] for t in sweep["targets"]):
            xs = [s["value"] for s in closed]
            stats = [s["targets"][target] for s in closed]
            line = ax_ttft.plot(xs, [st["ttft_ms"]["p50"] for st in stats], "o-", label=target)
            ax_ttft.plot(xs, [st["ttft_ms"]["p99"] for st in stats], "--",
                         color=line[0].get_color(), alpha=0.6)  # fmt: skip
            ax_tput.plot(xs, [st["output_throughput"] for st in stats], "o-", label=target)
        ax_ttft.set(title=f"{title}: TTFT p50 (solid) / p99 (dashed)", xlabel="concurrency",
                    ylabel="ms", yscale="log")  # fmt: skip
        ax_tput.set(title=f"{title}: output tokens/s", xlabel="concurrency", ylabel="tokens/s")
        for ax in (ax_ttft, ax_tput):
            ax.grid(True, alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_all(out_dir: Path, parts: dict[str, dict[str, Any]], notes: list[str]) -> str:
    """results.json, results.md and results.png under ``out_dir``; returns the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "results.json", {"parts": parts, "notes": notes})
    text = markdown(parts, notes)
    (out_dir / "results.md").write_text(text)
    sweeps = {title: part for title, part in parts.items() if "steps" in part}
    if sweeps and not plot(sweeps, out_dir / "results.png"):
        notes.append("matplotlib is not installed: no PNG written")
    return text

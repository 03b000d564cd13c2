"""Statistics, targets and the Markdown section of the ``noisy-neighbour`` workload.

Pure functions only (no I/O but reading a baseline file), so the numbers that judge the fair
admission queue can be unit-tested. Times are seconds in and milliseconds out, as in ``stats``.

Fairness: Jain's index over each user's achieved throughput divided by its *fair* throughput,
as in Jain, Chiu and Hawe (1984), where ``x_i = T_i / O_i`` (actual over optimal). The fair
throughput is the max-min fair (water-filling) share of what the engine served in all, given
each user's demand: a user asking for less than an equal split is owed only what it asks for,
and the rest is shared by the others. So a light user (B) is not counted as starved for asking
for little, and a heavy user (A) is not counted as greedy for using what B left.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from chatgate.bench.stats import percentile

KIND = "noisy-neighbour"
RATIO_TARGET = 1.2  # B's TTFT p50 at most this many times one A request's service time
THROUGHPUT_TOLERANCE = 0.05  # A's output tokens/s within this fraction of the baseline's
JAIN_TARGET = 0.9


def ttft_summary(ttfts: Sequence[float]) -> dict[str, float | None]:
    """p50, p90 and max in ms: the median is the target, p90 and max show the starved tail."""
    ms = [t * 1000.0 for t in ttfts]
    return {"p50": percentile(ms, 50), "p90": percentile(ms, 90), "max": max(ms, default=None)}


def median(values: Sequence[float]) -> float | None:
    """The service time is a median of a few runs: one slow run should not move it."""
    return percentile(values, 50)


def ttft_ratio(b_ttft_p50_ms: float | None, a_service_ms: float | None) -> float | None:
    """B's TTFT p50 over one A request's service time alone. Under first come, first served
    B waits for every queued A request (ratio ~ A streams / slots); a fair queue lets B in
    after at most the request in progress (ratio <= ~1)."""
    if b_ttft_p50_ms is None or not a_service_ms:
        return None
    return b_ttft_p50_ms / a_service_ms


def max_min_shares(capacity: float, demands: Mapping[str, float | None]) -> dict[str, float]:
    """Max-min fair (water-filling) split of ``capacity``; a demand of None is unbounded.

    Users whose demand fits in an equal split of what is left get their demand; the rest is
    split again among the others, until nobody's demand fits (they share the rest equally).
    """
    shares: dict[str, float] = {}
    pending = dict(demands)
    left = capacity
    while pending:
        equal = left / len(pending)
        fitting = {u: d for u, d in pending.items() if d is not None and d <= equal}
        if not fitting:
            shares.update((user, equal) for user in pending)
            break
        for user, demand in fitting.items():
            shares[user] = demand
            left -= demand
            del pending[user]
    return shares


def jain_index(values: Sequence[float]) -> float | None:
    """(sum x)^2 / (n * sum x^2): 1 when all are equal, 1/n when one user gets everything."""
    squares = sum(v * v for v in values)
    if not values or squares == 0:
        return None
    return sum(values) ** 2 / (len(values) * squares)


def fairness(
    throughput: Mapping[str, float], demands: Mapping[str, float | None]
) -> dict[str, Any]:
    """Per user: achieved, demand, fair share, achieved/fair; and Jain's index over the last.

    Capacity is what the engine served to everybody together in the window (the engines are
    work-conserving: they serve whatever is queued), so the fair shares add up to it when
    some demand is unbounded, and 1.0 means every user got exactly its max-min share.
    """
    capacity = sum(throughput.values())
    shares = max_min_shares(capacity, demands)
    users: dict[str, dict[str, float | None]] = {}
    normalised: list[float] = []
    for user, achieved in throughput.items():
        share = shares.get(user, 0.0)
        ratio = achieved / share if share > 0 else None
        if ratio is not None:
            normalised.append(ratio)
        users[user] = {
            "throughput": achieved,
            "demand": demands.get(user),
            "fair_share": share,
            "normalised": ratio,
        }
    return {"capacity": capacity, "users": users, "jain": jain_index(normalised)}


def tokens_in_window(
    started: float, chunk_times: Sequence[float], output_tokens: int, window: tuple[float, float]
) -> float:
    """Output tokens of one request that arrived within ``window`` (absolute seconds).

    Each content chunk carries ``output_tokens / chunks`` tokens (usage is the truth for a
    finished request; a cancelled one has no usage, so its chunks count one token each).
    """
    if not chunk_times:
        return 0.0
    per_chunk = output_tokens / len(chunk_times) if output_tokens else 1.0
    low, high = window
    inside = sum(1 for t in chunk_times if low <= started + t <= high)
    return inside * per_chunk


def baseline_throughput(path: Path, model: str | None = None) -> float | None:
    """A's output tokens/s in a previous results.json: its noisy-neighbour part of the same
    model (a suite may hold one per engine), else its first one; None when it has none."""
    data = json.loads(path.read_text())
    parts = [
        part
        for part in (data.get("parts") or {}).values()
        if isinstance(part, dict) and part.get("kind") == KIND
    ]
    same = [part for part in parts if part["workload"]["model"] == model]
    for part in same or parts:
        value = part["flood"]["a"]["output_throughput"]
        return float(value) if value is not None else None
    return None


def _verdict(ok: bool, text: str) -> str:
    return f"{'MET' if ok else 'MISSED'}: {text}"


def _ratio_verdict(part: dict[str, Any]) -> str:
    ratio = part["ratio"]
    p50, service = part["flood"]["b"]["ttft_ms"]["p50"], part["a_service"]["median_ms"]
    if ratio is None:
        return "NOT MEASURED: B TTFT p50 / A service time (no B TTFT or no A service time)"
    return _verdict(
        ratio <= RATIO_TARGET,
        f"B TTFT p50 {p50:.0f} ms = {ratio:.2f}x one A request alone ({service:.0f} ms)"
        f" (target <= {RATIO_TARGET}x)",
    )


def _throughput_verdict(part: dict[str, Any]) -> str:
    mine = part["flood"]["a"]["output_throughput"]
    baseline = part.get("baseline") or {}
    base = baseline.get("a_output_throughput")
    if not base:
        why = f"{baseline['file']} has no noisy-neighbour A throughput" if baseline else ""
        return f"NOT JUDGED: A output {mine:.1f} tok/s: no baseline{f' ({why})' if why else ''}"
    change = mine / base - 1
    return _verdict(
        abs(change) <= THROUGHPUT_TOLERANCE,
        f"A output {mine:.1f} tok/s vs baseline {base:.1f} ({change:+.1%})"
        f" (target within {THROUGHPUT_TOLERANCE:.0%})",
    )


def _jain_verdict(part: dict[str, Any]) -> str:
    jain = part["fairness"]["jain"]
    if jain is None:
        return "NOT MEASURED: Jain's fairness index (no throughput in the window)"
    return _verdict(
        jain >= JAIN_TARGET,
        f"Jain's fairness index {jain:.3f} over throughput / max-min fair share"
        f" (target >= {JAIN_TARGET})",
    )


def verdicts(part: dict[str, Any]) -> list[str]:
    """The three acceptance targets of the fair admission queue, one line each."""
    return [_ratio_verdict(part), _throughput_verdict(part), _jain_verdict(part)]


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _users_table(part: dict[str, Any]) -> list[str]:
    lines = [
        "| user | out tok/s | demand tok/s | fair share tok/s | achieved / fair |",
        "|---|---|---|---|---|",
    ]
    for user, u in part["fairness"]["users"].items():
        demand = "unbounded" if u["demand"] is None else _num(u["demand"], 1)
        lines.append(
            f"| {user} | {_num(u['throughput'], 1)} | {demand} | {_num(u['fair_share'], 1)}"
            f" | {_num(u['normalised'], 2)} |"
        )
    return lines


def _ttft_table(part: dict[str, Any]) -> list[str]:
    flood, alone = part["flood"]["b"], part["b_alone"]
    lines = [
        "| B | requests | errors | TTFT p50 | TTFT p90 | TTFT max |",
        "|---|---|---|---|---|---|",
    ]
    for label, s in (("alone (idle engine)", alone), ("beside A's flood", flood)):
        t = s["ttft_ms"]
        lines.append(
            f"| {label} | {s['requests']} | {s['errors']} | {_num(t['p50'])} | {_num(t['p90'])}"
            f" | {_num(t['max'])} |"
        )
    return lines


def _summary(part: dict[str, Any]) -> str:
    w, flood, a = part["workload"], part["flood"], part["flood"]["a"]
    capped = " (stopped by the time cap)" if flood["capped"] else ""
    return (
        f"`{w['model']}` at {part['url']}. A: {w['a_streams']} streams of max_tokens"
        f" {w['a_max_tokens']}, each sending its next request when the last ends; B: up to"
        f" {w['b_requests']} requests of max_tokens {w['b_max_tokens']}, one at a time, from"
        f" {w['b_delay_s']:g} s into the flood. Window (B's first request to B's last answer):"
        f" {flood['window_s']:.1f} s{capped}. A: {a['requests']} requests, {a['completed']}"
        f" finished, {a['errors']} errors, {a['cancelled']} cancelled at the end. One A request"
        f" alone: {_num(part['a_service']['median_ms'])} ms (median of"
        f" {len(part['a_service']['runs_ms'])}, {_num(part['a_service']['mean_tokens'])}"
        " tokens). Times in ms.\n"
    )


def markdown_section(title: str, part: dict[str, Any]) -> str:
    """The part's Markdown: the setting, B's TTFT alone and beside A, throughput per user,
    and the targets MET/MISSED."""
    lines = [f"### {title}\n", _summary(part), *_ttft_table(part), "", *_users_table(part), ""]
    lines.append(
        "Fair share: max-min split of what both users got together, B's demand being its"
        " output tokens/s alone, A's unbounded (it always has requests queued).\n"
    )
    lines += [f"- {line}" for line in part["verdicts"]]
    return "\n".join(lines) + "\n"

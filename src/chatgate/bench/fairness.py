"""Statistics, targets and the Markdown section of the ``noisy-neighbour`` workload.

Pure functions only (no I/O but reading a baseline file), so the numbers that judge the fair
admission queue can be unit-tested. Times are seconds in and milliseconds out, as in ``stats``.

Fairness: Jain's index over each user's achieved share divided by its *fair* share, as in
Jain, Chiu and Hawe (1984), where ``x_i = T_i / O_i`` (actual over optimal). The fair share is
the max-min fair (water-filling) share of what was served in all, given each user's demand: a
user asking for less than an equal split is owed only what it asks for, and the rest is shared
by the others. So a light user (B) is not counted as starved for asking for little, and a heavy
user (A) is not counted as greedy for using what B left.

What is shared is the engine's **slots** (its batch): the judged index is over slots held
(mean concurrent requests past their first token) against slots wanted (mean requests
outstanding), both seen by the client. That is what a gateway decides: it cannot make one
sequence of a batch decode faster than the others, and on a continuous-batching engine every
sequence of the batch decodes at the same speed, so a user's share of the slots is its share
of the tokens. It is the backlog view of fairness of Sheng et al. (2024, "Fairness in Serving
Large Language Models", VTC): a user is owed service while it has requests waiting; one whose
every request is admitted at once got all it asked for.

The index over output tokens/s against each user's demand *alone on an idle engine* is kept
for context (``fairness_rate``). It cannot reach 0.9 together with A's throughput target on
an engine whose total tokens/s does not grow with the batch (two CPU cores: ~100 tok/s with 1
sequence or 5): B's demand alone (~50-70 tok/s) is then half the engine, so B reaching its
fair share there means A losing half its tokens/s while B is about, whatever the gateway does.
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
    achieved_by: Mapping[str, float], demands: Mapping[str, float | None]
) -> dict[str, Any]:
    """Per user: achieved, demand, fair share, achieved/fair; and Jain's index over the last.

    ``achieved_by``: tokens/s or slots held, ``demands`` in the same unit. Capacity is what
    was served to everybody together in the window (the engines are work-conserving: they
    serve whatever is queued), so the fair shares add up to it when some demand is
    unbounded or large, and 1.0 means every user got exactly its max-min share.
    """
    capacity = sum(achieved_by.values())
    shares = max_min_shares(capacity, demands)
    users: dict[str, dict[str, float | None]] = {}
    normalised: list[float] = []
    for user, achieved in achieved_by.items():
        share = shares.get(user, 0.0)
        ratio = achieved / share if share > 0 else None
        if ratio is not None:
            normalised.append(ratio)
        users[user] = {
            "achieved": achieved,
            "demand": demands.get(user),
            "fair_share": share,
            "normalised": ratio,
        }
    return {"capacity": capacity, "users": users, "jain": jain_index(normalised)}


def overlap(interval: tuple[float, float], window: tuple[float, float]) -> float:
    """Seconds of ``interval`` inside ``window`` (both absolute, low to high)."""
    return max(0.0, min(interval[1], window[1]) - max(interval[0], window[0]))


def mean_concurrency(
    intervals: Sequence[tuple[float, float]], window: tuple[float, float]
) -> float:
    """How many of ``intervals`` were open at once, on average over ``window``."""
    length = window[1] - window[0]
    if length <= 0:
        return 0.0
    return sum(overlap(interval, window) for interval in intervals) / length


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
    """A's output tokens/s over the whole flood in a previous results.json: its
    noisy-neighbour part of the same model (a suite may hold one per engine), else its first
    one; None when it has none."""
    data = json.loads(path.read_text())
    parts = [
        part
        for part in (data.get("parts") or {}).values()
        if isinstance(part, dict) and part.get("kind") == KIND
    ]
    same = [part for part in parts if part["workload"]["model"] == model]
    for part in same or parts:
        value = part["flood"]["a"].get("flood_output_throughput")
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
    """A's tokens/s over the whole flood (it lasts ``flood_s`` at least, B's requests inside
    it): what fairness costs the heavy user, against the same run without the queue."""
    mine = part["flood"]["a"]["flood_output_throughput"]
    baseline = part.get("baseline") or {}
    base = baseline.get("a_output_throughput")
    if not base:
        why = f"{baseline['file']} has no noisy-neighbour A throughput" if baseline else ""
        reason = f" ({why})" if why else ""
        return f"NOT JUDGED: A output over the flood {mine:.1f} tok/s: no baseline{reason}"
    change = mine / base - 1
    return _verdict(
        abs(change) <= THROUGHPUT_TOLERANCE,
        f"A output over the flood {mine:.1f} tok/s vs baseline {base:.1f} ({change:+.1%})"
        f" (target within {THROUGHPUT_TOLERANCE:.0%})",
    )


def _jain_verdict(part: dict[str, Any]) -> str:
    jain = part["fairness"]["jain"]
    if jain is None:
        return "NOT MEASURED: Jain's fairness index (no throughput in the window)"
    return _verdict(
        jain >= JAIN_TARGET,
        f"Jain's fairness index {jain:.3f} over slots held / max-min fair share of slots"
        f" (target >= {JAIN_TARGET})",
    )


def verdicts(part: dict[str, Any]) -> list[str]:
    """The three acceptance targets of the fair admission queue, one line each."""
    return [_ratio_verdict(part), _throughput_verdict(part), _jain_verdict(part)]


def _num(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


SLOT_HEADER = "| user | slots held | slots wanted | fair share | held / fair |"
RATE_HEADER = "| user | out tok/s | tok/s alone | fair share tok/s | achieved / fair |"


def _users_table(result: dict[str, Any], header: str) -> list[str]:
    lines = [header, "|---|---|---|---|---|"]
    digits = 2 if header == SLOT_HEADER else 1
    for user, u in result["users"].items():
        demand = "unbounded" if u["demand"] is None else _num(u["demand"], digits)
        lines.append(
            f"| {user} | {_num(u['achieved'], digits)} | {demand}"
            f" | {_num(u['fair_share'], digits)} | {_num(u['normalised'], 2)} |"
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
    both = flood.get("window_output_throughput")
    return (
        f"`{w['model']}` at {part['url']}. A: {w['a_streams']} streams of max_tokens"
        f" {w['a_max_tokens']}, each sending its next request when the last ends; B: up to"
        f" {w['b_requests']} requests of max_tokens {w['b_max_tokens']}, one at a time, from"
        f" {w['b_delay_s']:g} s into the flood. Flood: {flood['flood_s']:.1f} s{capped};"
        f" window (B's first request to B's last answer): {flood['window_s']:.1f} s, where A"
        f" got {_num(a['output_throughput'], 1)} tok/s and both users together"
        f" {_num(both, 1)}. A: {a['requests']} requests, {a['completed']}"
        f" finished, {a['errors']} errors, {a['cancelled']} cancelled at the end. One A request"
        f" alone: {_num(part['a_service']['median_ms'])} ms (median of"
        f" {len(part['a_service']['runs_ms'])}, {_num(part['a_service']['mean_tokens'])}"
        " tokens). Times in ms.\n"
    )


def markdown_section(title: str, part: dict[str, Any]) -> str:
    """The part's Markdown: the setting, B's TTFT alone and beside A, throughput per user,
    and the targets MET/MISSED."""
    lines = [f"### {title}\n", _summary(part), *_ttft_table(part), ""]
    lines += [*_users_table(part["fairness"], SLOT_HEADER), ""]
    lines.append(
        "Slots (judged): mean requests past their first token (held) and mean requests"
        " outstanding (wanted) over the window; fair share: the max-min split of the slots"
        " held in all, given what each user wanted.\n"
    )
    rate = part.get("fairness_rate")
    if rate is not None:
        lines += [*_users_table(rate, RATE_HEADER), ""]
        lines.append(
            f"Output tokens/s (context; Jain {_num(rate['jain'], 3)}): B's demand is its"
            " tokens/s alone on the idle engine, A's unbounded.\n"
        )
    lines += [f"- {line}" for line in part["verdicts"]]
    return "\n".join(lines) + "\n"

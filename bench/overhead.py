"""Gateway overhead only, repeated, for before/after comparisons and profiling.

Part (a) of the suite, narrowed to the steps the issue-6 targets name (c=1, c=32,
200 req/s), run ``--repeat`` times; the medians over the repeats are printed. Several
chatgate source trees can run side by side as separate targets (``--tree NAME=SRC``,
each served from ``SRC`` via PYTHONPATH with its own data dir), so a build before a
change and after it are measured interleaved, in the same conditions:

    git archive HEAD src | tar -x -C /tmp/before
    .venv/bin/python bench/overhead.py --tree before=/tmp/before/src --tree after=src

``--profile NAME`` runs py-spy (``pip install py-spy``) on that chatgate under a c=32
load and writes a flame graph and its top frames to the output directory.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import run_suite as suite

from chatgate.bench import report
from chatgate.bench.loadgen import Budget, Target, Workload, client_session, run_closed
from chatgate.bench.sweep import SweepConfig, run_sweep

WORKLOAD = Workload(model="fast", input_tokens=32, max_tokens=16)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", action="append", default=[], help="NAME=SRC (repeatable)")
    parser.add_argument("--litellm", action="store_true", help="add the LiteLLM proxy")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--rates", default="200")
    parser.add_argument("--profile", help="py-spy this tree's server under a c=32 load")
    parser.add_argument("--profile-seconds", type=float, default=20.0)
    parser.add_argument("--cpu-requests", type=int, default=1000, help="0: skip the CPU phase")
    parser.add_argument("--out", type=Path, default=None)
    return parser.parse_args()


def start_servers(args: argparse.Namespace, logs: Path, tmp: Path) -> dict[str, Any]:
    up, relay = suite.free_port(), suite.free_port()
    direct = f"http://127.0.0.1:{up}"
    python = [sys.executable, "-m", "chatgate.bench.cli"]
    suite.start("upstream", [*python, "upstream", "--port", str(up), "--chunks", "16"], logs)
    relay_argv = [*python, "relay", "--port", str(relay), "--upstream", direct + "/v1"]
    suite.start("relay", relay_argv, logs)
    urls = {"direct": direct, "relay": f"http://127.0.0.1:{relay}"}
    pids = {"direct": suite.processes[0].pid, "relay": suite.processes[1].pid}
    relay_up = suite.wait_http(urls["relay"] + "/v1/models", 30)
    if not (suite.wait_http(direct + "/health", 30) and relay_up):
        raise SystemExit("the fast upstream or the relay did not start")
    keys: dict[str, str] = {}
    for spec in args.tree or [f"chatgate={suite.ROOT / 'src'}"]:
        name, _, src = spec.partition("=")
        urls[name], keys[name] = suite.start_chatgate(
            [f"fast={direct}"], logs, tmp, name, Path(src).resolve()
        )
        pids[name] = suite.processes[-1].pid  # start_chatgate started it last
    if args.litellm:
        litellm = suite.start_litellm(direct, logs, tmp)
        if litellm:
            urls["litellm"] = litellm
            pids["litellm"] = suite.processes[-1].pid
    return {"urls": urls, "keys": keys, "pids": pids}


def targets_of(servers: dict[str, Any]) -> list[Target]:
    keys: dict[str, str] = servers["keys"]
    return [Target(name, url + "/v1", keys.get(name)) for name, url in servers["urls"].items()]


async def profile(target: Target, pid: int, seconds: float, out: Path) -> None:
    """py-spy (flame graph, then raw stacks) while 32 sessions load ``target``."""
    await _spy(target, pid, seconds, ["--format", "flamegraph", "-o", str(out / "profile.svg")])
    await _spy(target, pid, seconds, ["--format", "raw", "-o", str(out / "profile.txt")])
    (out / "profile-top.md").write_text(top_frames(out / "profile.txt"))


async def _spy(target: Target, pid: int, seconds: float, output: list[str]) -> None:
    # --nonblocking: sampling does not pause the server; --gil: only samples of the thread
    # holding the GIL, i.e. where the CPU goes, not where threads wait.
    argv = [str(suite.BIN / "py-spy"), "record", "--pid", str(pid), "--nonblocking", "--gil"]
    spy = subprocess.Popen([*argv, "--duration", str(int(seconds)), *output])
    session = client_session(64, WORKLOAD.timeout_s)
    try:
        while spy.poll() is None:
            await run_closed(session, target, WORKLOAD, 32, Budget(None, 2.0))
    finally:
        await session.close()
    spy.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


async def cpu_per_request(
    targets: list[Target], pids: dict[str, int], count: int
) -> dict[str, float]:
    """CPU ms each server process spends per request (8 sessions, ``count`` requests).

    Unlike req/s this hardly depends on what else the shared machine is doing: it is the
    cost a request has, not the share of the CPU the server got. ``relay`` counts the
    relay process only and ``direct`` the upstream alone.
    """
    spent_ms: dict[str, float] = {}
    for target in targets:
        session = client_session(64, WORKLOAD.timeout_s)
        try:
            await run_closed(session, target, WORKLOAD, 8, Budget(50, None))  # warm
            before = cpu_seconds(pids[target.name])
            results, _ = await run_closed(session, target, WORKLOAD, 8, Budget(count, None))
            spent = cpu_seconds(pids[target.name]) - before
        finally:
            await session.close()
        if any(not r.ok for r in results):
            suite.say(f"[cpu] {target.name}: {sum(not r.ok for r in results)} errors")
        spent_ms[target.name] = spent * 1000 / len(results)
        suite.say(f"[cpu] {target.name}: {spent_ms[target.name]:.2f} CPU ms/request")
    return spent_ms


def cpu_table(runs: list[dict[str, float]]) -> str:
    rows = ["| target | CPU ms/request (median) | runs |", "|---|---|---|"]
    for name in runs[0]:
        rows.append(f"| {name} | {_median([r[name] for r in runs]):.2f} | "
                    + ", ".join(f"{r[name]:.2f}" for r in runs) + " |")  # fmt: skip
    return "\n".join(rows) + "\n"


# Stages of a /v1 request, each named by frames its samples pass through (all of them).
STAGES: dict[str, tuple[str, ...]] = {
    "auth: API key -> identity (deps.get_identity)": ("deps.py:get_identity",),
    "limits: admission (RateLimiter.admit)": ("service.py:RateLimiter.admit",),
    "FastAPI dependency solving (incl. auth)": ("utils.py:solve_dependencies",),
    "request body read + JSON parse": ("requests.py:Request.body",),
    "disconnect watcher (router._finished_unless_disconnected)": (
        "router.py:_finished_unless_disconnected",
    ),
    "engine request (open_upstream, aiohttp)": ("service.py:open_upstream",),
    "relay of the stream (relay_stream, incl. its writes)": ("service.py:relay_stream",),
    "  of which: reading engine lines (EngineClient)": (
        "service.py:relay_stream",
        "client.py:EngineClient.",
    ),
    "ASGI send chain (middleware send wrappers + uvicorn)": (
        "middleware.py:GatewayMiddleware.__call__.<locals>.send_wrapper",
    ),
    "usage row: writer commit (UsageWriter._run)": ("service.py:UsageWriter._run",),
    "usage log line (log_usage)": ("logging.py:log_usage",),
    "access log line (middleware)": ("middleware.py:GatewayMiddleware.__call__", "Logger.info"),
    "metrics from the usage row (observe_usage)": ("metrics.py:Metrics.observe_usage",),
}


def top_frames(raw: Path, count: int = 40) -> str:
    """Share of samples per request stage, then the top functions (file:function) by
    inclusive share, from py-spy's raw stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = broken = 0
    for line in raw.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if not samples.isdigit():
            continue
        n = int(samples)
        frames = [_short(frame) for frame in stack.split(";")]
        if "runners.py:Runner.run" not in frames:
            # py-spy could not unwind this sample to the event loop (uvloop and greenlet
            # frames break some stacks): stages cannot be told apart in it, so leave it out.
            broken += n
            continue
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
        joined = ";".join(frames)
        for stage, needles in STAGES.items():
            stages[stage] += n if all(needle in joined for needle in needles) else 0
    rows = ["| stage | share of samples |", "|---|---|"]
    rows += [f"| {stage} | {stages[stage] / total:.1%} |" for stage in STAGES]
    rows += ["", "| inclusive | own | frame |", "|---|---|---|"]
    for frame, n in inclusive.most_common(count):
        rows.append(f"| {n / total:.1%} | {own[frame] / total:.1%} | `{frame}` |")
    head = (
        f"{total} samples of the event loop's thread with a complete stack ({broken} more "
        "could not be unwound); py-spy --gil: where the CPU goes"
    )
    return head + "\n\n" + "\n".join(rows) + "\n"


def _short(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "module.py:func"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{file}:{name}"


def medians(sweeps: list[dict[str, Any]]) -> str:
    """Median over repeats of req/s and (added) TTFT per step and target."""
    rows = [
        "| step | target | req/s | TTFT p50 | TTFT p99 | +TTFT p50 | +TTFT p99 | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for index, step in enumerate(sweeps[0]["steps"]):
        for name in step["targets"]:
            runs = [s["steps"][index] for s in sweeps]
            stats = [r["targets"][name] for r in runs]
            extra = [r["added"].get(name, {}).get("ttft_ms", {}) for r in runs]
            cells = [
                step["label"], name,
                f"{_median([s['request_throughput'] for s in stats]):.0f}",
                _cell([s["ttft_ms"]["p50"] for s in stats]),
                _cell([s["ttft_ms"]["p99"] for s in stats]),
                _cell([e.get("p50") for e in extra]),
                _cell([e.get("p99") for e in extra]),
                str(sum(s["errors"] for s in stats)),
            ]  # fmt: skip
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _cell(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return report._ms(statistics.median(known)) if known else "–"


def main() -> None:
    args = parse_args()
    out = args.out or suite.ROOT / "bench" / "results" / ("overhead-" + time.strftime("%H%M%S"))
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="chatgate-overhead-"))
    sweeps: list[dict[str, Any]] = []
    cpu_runs: list[dict[str, float]] = []
    try:
        servers = start_servers(args, logs, tmp)
        targets = targets_of(servers)
        if args.profile:
            target = next(t for t in targets if t.name == args.profile)
            pid = servers["pids"][args.profile]
            asyncio.run(profile(target, pid, args.profile_seconds, out))
            suite.say((out / "profile-top.md").read_text())
        for run in range(args.repeat):
            if args.cpu_requests:
                cpu = asyncio.run(cpu_per_request(targets, servers["pids"], args.cpu_requests))
                cpu_runs.append(cpu)
            config = SweepConfig(
                targets,
                concurrency=[int(c) for c in args.concurrency.split(",") if c],
                request_rates=[float(r) for r in args.rates.split(",") if r],
                requests=args.requests,
                warmup=20,
                workload=WORKLOAD,
                seed=run,
            )
            sweep = asyncio.run(run_sweep(config, suite.say))
            report.write_json(out / f"run-{run}.json", sweep)
            sweeps.append(sweep)
    finally:
        for proc in reversed(suite.processes):
            proc.terminate()
        for proc in suite.processes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    if cpu_runs:
        table = cpu_table(cpu_runs)
        (out / "cpu.md").write_text(table)
        print(table)
    if sweeps:
        table = medians(sweeps)
        (out / "medians.md").write_text(table)
        suite.say(f"\nmedians of {len(sweeps)} run(s), {args.requests} requests per step:\n")
        print(table)


if __name__ == "__main__":
    main()

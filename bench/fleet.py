"""Fleet benchmark (part of ``make bench``): web-chat streaming through nginx in front of 1 and
of 3 ``chatgate serve`` replicas, and what the Redis stream bus costs each generation.

Everything runs on 127.0.0.1: the fast upstream (``chatgate bench upstream``, 16 chunks, no
delay) as the engine; a fresh PostgreSQL database and one Redis key prefix; replicas started
as ``tests/fleet`` starts them (``tests/fleet/cluster.py``: own port and data dir, shared JWT
secret, rate limits lifted); two private nginx (round-robin upstream of replica 0 alone, and
of replicas 0-2). Two more replicas are reached directly for the Redis comparison: one
without ``CHATGATE_REDIS_URL`` (generations in memory, one node) and one with Redis but the
engine admission queue kept per process (``CHATGATE_ENGINE_QUEUE_SHARED=false``), so that
the difference to the first is the generation bus (stream writes, conversation lock, lease
renewals) and nothing else; replica 0 (everything shared through Redis) is the third.

Load: ``POST /api/chat`` (a new conversation per request, as the admin), closed loop; TTFT is
the time to the first content event. Targets are measured interleaved, ``--rounds`` times,
and the medians reported. Needs nginx, PostgreSQL and Redis (as ``make test``); without one
it says so and exits 0. Results: bench/results/<date>-fleet/results.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the fleet launcher lives with the live fleet test

from chatgate.bench.stats import RequestResult, step_stats  # noqa: E402
from tests.conftest import PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT, port_open  # noqa: E402
from tests.e2e.harness import ADMIN_PASSWORD, Served  # noqa: E402
from tests.fleet import cluster  # noqa: E402
from tests.fleet.cluster import Fleet, FleetConfig, Nginx  # noqa: E402
from tests.helpers import free_port  # noqa: E402

MODEL = "fast"
PROMPT = "Write two short sentences about the sea."


@dataclass(frozen=True)
class ChatTarget:
    name: str
    url: str
    concurrency: int
    pids: tuple[int, ...] = ()  # the gateway processes behind it (their CPU per request)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its waited-for children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def redis_server_pid() -> int | None:
    """The local redis-server (its CPU per request is the bus's share on the Redis side)."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "redis-server":
                return int(entry.name)
        except OSError:
            continue
    return None


REDIS_PID = redis_server_pid()


def redis_cpu() -> float:
    return cpu_seconds(REDIS_PID) if REDIS_PID is not None else 0.0


async def one_chat(session: aiohttp.ClientSession, url: str, token: str) -> RequestResult:
    """One web chat: TTFT at the first content event, tokens = content events."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    body = {"model": MODEL, "message": PROMPT}
    ttft: float | None = None
    times: list[float] = []
    done = False
    try:
        async with session.post(url + "/api/chat", json=body, headers=headers) as response:
            if response.status != 200:
                failed = time.perf_counter() - started
                return RequestResult(False, failed, error=str(response.status))
            buffer = b""
            async for piece in response.content.iter_any():
                buffer += piece
                *blocks, buffer = buffer.split(b"\n\n")
                for block in blocks:
                    if b'"content"' in block and b"event:" not in block:
                        times.append(time.perf_counter() - started)
                        ttft = times[0]
                    elif block.startswith(b"id:") and b"event: done" in block:
                        done = b'"status":"complete"' in block
    except (aiohttp.ClientError, TimeoutError) as exc:
        return RequestResult(False, time.perf_counter() - started, error=type(exc).__name__)
    e2e = time.perf_counter() - started
    if not done:
        return RequestResult(False, e2e, ttft, times, len(times), error="not complete")
    return RequestResult(True, e2e, ttft, times, len(times))


async def closed_loop(target: ChatTarget, token: str, requests: int) -> dict[str, Any]:
    """``concurrency`` workers, each starting its next chat when the last ended."""
    results: list[RequestResult] = []
    left = requests
    connector = aiohttp.TCPConnector(limit=target.concurrency * 2)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                results.append(await one_chat(session, target.url, token))

        cpu = [sum(cpu_seconds(p) for p in target.pids), redis_cpu()]
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(target.concurrency)))
        wall = time.perf_counter() - began
        used = [sum(cpu_seconds(p) for p in target.pids), redis_cpu()]
    stats = step_stats(results, wall)
    stats["gateway_cpu_ms"] = (used[0] - cpu[0]) * 1000 / max(1, len(results))
    stats["redis_cpu_ms"] = (used[1] - cpu[1]) * 1000 / max(1, len(results))
    return stats


def summary(name: str, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the rounds of one target."""

    def median(pick: Any) -> float:
        return float(statistics.median(pick(r) for r in rounds))

    return {
        "target": name,
        "rounds": len(rounds),
        "requests": sum(r["requests"] for r in rounds),
        "errors": sum(r["errors"] for r in rounds),
        "req_per_s": median(lambda r: r["request_throughput"]),
        "out_tok_per_s": median(lambda r: r["output_throughput"]),
        "ttft_p50_ms": median(lambda r: r["ttft_ms"]["p50"]),
        "ttft_p99_ms": median(lambda r: r["ttft_ms"]["p99"]),
        "e2e_p50_ms": median(lambda r: r["e2e_ms"]["p50"]),
        "gateway_cpu_ms": median(lambda r: r["gateway_cpu_ms"]),
        "redis_cpu_ms": median(lambda r: r["redis_cpu_ms"]),
        "per_round_req_per_s": [round(r["request_throughput"], 1) for r in rounds],
    }


async def measure(targets: list[ChatTarget], token: str, args: argparse.Namespace) -> list[Any]:
    for target in targets:  # warm-up: connections, caches, the first queries
        await closed_loop(target, token, args.warmup)
    rounds: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
    for index in range(args.rounds):
        order = targets[index % len(targets) :] + targets[: index % len(targets)]
        for target in order:
            stats = await closed_loop(target, token, args.requests)
            rounds[target.name].append(stats)
            line = (
                f"[fleet] round {index + 1} {target.name}: {stats['request_throughput']:.1f} "
                f"req/s, TTFT p50 {stats['ttft_ms']['p50']:.1f} ms, errors {stats['errors']}"
            )
            print(line, flush=True)
    return [summary(name, values) for name, values in rounds.items()]


def pid_of(replica: Served) -> int:
    assert replica.process is not None
    return replica.process.pid


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| target | req | err | req/s | out tok/s | TTFT p50 | TTFT p99 | E2E p50 | "
        "gateway CPU ms/req | Redis CPU ms/req | req/s per round |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['requests']} | {r['errors']} | {r['req_per_s']:.1f} | "
            f"{r['out_tok_per_s']:.0f} | {r['ttft_p50_ms']:.1f} | {r['ttft_p99_ms']:.1f} | "
            f"{r['e2e_p50_ms']:.1f} | {r['gateway_cpu_ms']:.1f} | {r['redis_cpu_ms']:.2f} | "
            f"{r['per_round_req_per_s']} |"
        )
    return "\n".join(lines)


def missing_service() -> str | None:
    if shutil.which("nginx") is None and shutil.which("nginx", path="/usr/sbin:/sbin") is None:
        return "nginx is not installed"
    for name, host, port in (("PostgreSQL", PG_HOST, PG_PORT), ("Redis", REDIS_HOST, REDIS_PORT)):
        if not port_open(host, port):
            return f"{name} is not reachable at {host}:{port}"
    return None


async def run(args: argparse.Namespace, root: Path) -> tuple[list[Any], list[Any]]:
    nginx_bin = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    assert nginx_bin is not None
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "chatgate.bench.cli", "upstream", "--port", str(port),
         "--chunks", "16"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    name, database_url = await cluster.create_database()
    prefix = f"bench-fleet-{uuid.uuid4().hex[:8]}"
    config = FleetConfig(f"{MODEL}=http://127.0.0.1:{port}/v1", database_url,
                         cluster.redis_url(), prefix)  # fmt: skip
    fleet = Fleet.plan(config, root, 3)
    without = FleetConfig(config.engine, database_url, None, prefix)
    bus_only = FleetConfig(
        config.engine, database_url, config.redis_url, prefix,
        {"CHATGATE_ENGINE_QUEUE_SHARED": "false"},
    )  # fmt: skip
    solo = [
        cluster.make_replica(without, root / "r-none", free_port()),
        cluster.make_replica(bus_only, root / "r-bus", free_port()),
    ]
    proxies = [Nginx(nginx_bin, root / "nginx-1", fleet.addresses[:1]),
               Nginx(nginx_bin, root / "nginx-3", fleet.addresses)]  # fmt: skip
    try:
        await fleet.start(None)
        await asyncio.gather(*(asyncio.to_thread(r.start) for r in solo))
        for proxy in proxies:
            await asyncio.to_thread(proxy.start)
        token = await asyncio.to_thread(fleet.replicas[0].token, "admin", ADMIN_PASSWORD)
        c = args.concurrency
        pids = [pid_of(r) for r in fleet.replicas]
        scale = [
            ChatTarget("nginx -> 1 replica", proxies[0].url, c, (pids[0],)),
            ChatTarget("nginx -> 3 replicas", proxies[1].url, c, tuple(pids)),
        ]
        bus = [
            ChatTarget("no Redis (in-memory bus)", solo[0].url, 32, (pid_of(solo[0]),)),
            ChatTarget("Redis: stream bus only", solo[1].url, 32, (pid_of(solo[1]),)),
            ChatTarget("Redis: bus + shared admission", fleet.replicas[0].url, 32, (pids[0],)),
        ]
        print("[fleet] web-chat throughput, 1 vs 3 replicas behind nginx", flush=True)
        scaled = await measure(scale, token, args)
        print("[fleet] TTFT with and without Redis at c=32 (one replica, direct)", flush=True)
        costs = await measure(bus, token, args)
    finally:
        for proxy in proxies:
            proxy.stop()
        await fleet.stop()
        await asyncio.gather(*(asyncio.to_thread(r.stop) for r in solo))
        upstream.terminate()
        upstream.wait(10)
        await cluster.drop_database(name)
        await cluster.drop_prefix(prefix)
    return scaled, costs


def report(args: argparse.Namespace, scaled: list[Any], costs: list[Any]) -> str:
    base = costs[0]
    added = [
        f"- {row['target']}: TTFT p50 {row['ttft_p50_ms'] - base['ttft_p50_ms']:+.1f} ms, "
        f"p99 {row['ttft_p99_ms'] - base['ttft_p99_ms']:+.1f} ms; gateway CPU "
        f"{row['gateway_cpu_ms'] - base['gateway_cpu_ms']:+.2f} ms, Redis CPU "
        f"{row['redis_cpu_ms'] - base['redis_cpu_ms']:+.2f} ms per generation"
        for row in costs[1:]
    ]
    load = os.getloadavg()
    return "\n\n".join([
        f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} at the end; "
        f"{args.requests} requests per round and target, {args.rounds} rounds, medians",
        f"web chat, c={args.concurrency}, fast upstream (16 chunks), PostgreSQL + Redis:",
        table(scaled),
        "web chat, c=32, one replica reached directly:",
        table(costs),
        "Redis cost per generation (against no Redis):\n" + "\n".join(added),
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per round and target")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=32, help="for 1 vs 3 replicas")
    args = parser.parse_args()
    if os.environ.get("BENCH_QUICK") == "1":
        args.requests, args.rounds, args.warmup = 60, 1, 10
    problem = missing_service()
    if problem:
        print(f"[fleet] skipped: {problem}")
        return
    out = ROOT / "bench" / "results" / (time.strftime("%Y-%m-%d-%H%M%S") + "-fleet")
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="chatgate-bench-fleet-"))
    try:
        scaled, costs = asyncio.run(run(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = report(args, scaled, costs)
    (out / "results.md").write_text(text + "\n")
    results = {"args": vars(args), "replicas": scaled, "redis": costs}
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()

"""``chatgate bench``: the load generator (default command), ``upstream`` and ``relay``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from chatgate.bench import relay, report, upstream
from chatgate.bench.loadgen import Workload, parse_target
from chatgate.bench.noisy import NoisyConfig, run_noisy
from chatgate.bench.sweep import SweepConfig, run_sweep

bench_app = typer.Typer(
    help="Benchmark OpenAI-compatible targets side by side (TTFT, TPOT, ITL, throughput).",
    pretty_exceptions_enable=False,
)


def _numbers(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def say(message: str) -> None:
    typer.echo(message, err=True)


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    target: Annotated[
        list[str] | None,
        typer.Option("--target", help="NAME=URL[@KEY] (repeatable); name one `direct`"),
    ] = None,
    concurrency: Annotated[str, typer.Option(help="Closed-loop steps")] = "1,5,10,32",
    request_rate: Annotated[str, typer.Option(help="Open-loop Poisson rates (req/s)")] = "",
    requests: Annotated[int | None, typer.Option(help="Requests per step and target")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds per step and target")] = None,
    input_tokens: Annotated[int, typer.Option(help="Prompt length (words ~ tokens)")] = 32,
    max_tokens: Annotated[int, typer.Option(help="Output tokens asked for")] = 16,
    multi_turn: Annotated[int, typer.Option(help="Turns per chat session")] = 1,
    warmup: Annotated[int, typer.Option(help="Warm-up requests per target")] = 10,
    model: Annotated[str, typer.Option(help="Model name sent to every target")] = "default",
    timeout: Annotated[float, typer.Option(help="Per-request timeout (s)")] = 120.0,
    seed: Annotated[int, typer.Option(help="Seed of the Poisson arrivals")] = 0,
    out: Annotated[Path | None, typer.Option(help="Write results.{json,md,png} here")] = None,
) -> None:
    """Measure every target at every step, interleaved, and print the Markdown table."""
    if ctx.invoked_subcommand is not None:
        return
    if not target:
        raise typer.BadParameter("give at least one --target NAME=URL[@KEY]", param_hint="--target")
    try:
        targets = [parse_target(spec) for spec in target]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--target") from exc
    if requests is None and duration is None:
        requests = 200
    config = SweepConfig(
        targets=targets,
        concurrency=[int(c) for c in _numbers(concurrency)],
        request_rates=_numbers(request_rate),
        requests=requests,
        duration_s=duration,
        workload=Workload(model, input_tokens, max_tokens, multi_turn, timeout),
        warmup=warmup,
        seed=seed,
    )
    sweep = asyncio.run(run_sweep(config, say))
    parts = {"bench": sweep}
    notes: list[str] = []
    if out is not None:
        text = report.write_all(out, parts, notes)
        say(f"[bench] wrote {out}/results.json, results.md, results.png")
    else:
        text = report.markdown(parts, notes)
    typer.echo(text)


@bench_app.command("noisy-neighbour")
def noisy_neighbour_cmd(
    url: Annotated[str, typer.Option(help="The gateway's base URL (both users)")],
    key_a: Annotated[str | None, typer.Option(help="User A's API key (the flood)")] = None,
    key_b: Annotated[str | None, typer.Option(help="User B's API key (short requests)")] = None,
    model: Annotated[str, typer.Option(help="Model name for both users")] = "default",
    a_streams: Annotated[int, typer.Option(help="A's concurrent streams")] = 16,
    a_max_tokens: Annotated[int, typer.Option(help="max_tokens of A's requests")] = 200,
    b_requests: Annotated[int, typer.Option(help="B's requests, one at a time")] = 10,
    b_max_tokens: Annotated[int, typer.Option(help="max_tokens of B's requests")] = 16,
    duration: Annotated[float, typer.Option(help="Cap on the flood (s)")] = 600.0,
    flood_seconds: Annotated[
        float, typer.Option(help="The flood lasts this long at least (s; 0: ends with B)")
    ] = 60.0,
    b_delay: Annotated[float, typer.Option(help="B starts this long into the flood (s)")] = 1.0,
    service_runs: Annotated[int, typer.Option(help="A requests alone (median)")] = 3,
    timeout: Annotated[float, typer.Option(help="Per-request timeout (s)")] = 600.0,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="A previous results.json: A's tok/s over the flood to stay within 5 %",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write results.{json,md} here")] = None,
) -> None:
    """One user floods, another sends short requests: B's TTFT and per-user fairness."""
    url = url.rstrip("/")
    config = NoisyConfig(
        url=url if url.endswith("/v1") else url + "/v1",
        key_a=key_a, key_b=key_b, model=model,
        a_streams=a_streams, a_max_tokens=a_max_tokens,
        b_requests=b_requests, b_max_tokens=b_max_tokens,
        duration_s=duration, flood_s=flood_seconds, b_delay_s=b_delay,
        service_runs=service_runs,
        timeout_s=timeout, baseline=baseline,
    )  # fmt: skip
    try:
        part = asyncio.run(run_noisy(config, say))
    except RuntimeError as exc:
        say(f"[noisy] {exc}")
        raise typer.Exit(1) from exc
    parts = {"noisy-neighbour": part}
    if out is not None:
        text = report.write_all(out, parts, [])
        say(f"[bench] wrote {out}/results.json, results.md")
    else:
        text = report.markdown(parts)
    typer.echo(text)


@bench_app.command("upstream")
def upstream_cmd(
    port: Annotated[int, typer.Option(help="Port")] = 9100,
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    chunks: Annotated[int, typer.Option(help="Content chunks per stream")] = 16,
    delay_ms: Annotated[float, typer.Option(help="Delay between chunks (ms)")] = 0.0,
) -> None:
    """A fast OpenAI-compatible streaming server (no engine)."""
    say(f"[bench] fast upstream on http://{host}:{port}/v1 ({chunks} chunks, {delay_ms} ms)")
    upstream.serve(host, port, chunks, delay_ms)


@bench_app.command("relay")
def relay_cmd(
    upstream_url: Annotated[str, typer.Option("--upstream", help="Base URL to forward to")],
    port: Annotated[int, typer.Option(help="Port")] = 9101,
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
) -> None:
    """A bare aiohttp pass-through relay (no auth, no accounting)."""
    say(f"[bench] bare relay on http://{host}:{port}/v1 -> {upstream_url}")
    relay.serve(host, port, upstream_url)


if __name__ == "__main__":
    bench_app()

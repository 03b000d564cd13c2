"""Run the gateway as a background service: start, stop, restart, status, logs.

`chatgate start` launches `chatgate serve` detached in its own session (so one signal to the process
group reaches everything it started), records it in ``run_dir/chatgate.pid`` and appends its output
to ``log_dir/gateway.log``. The other commands work from that pid file, the embedded-engine state
files (``run_dir/engine-<name>.json``) and the gateway's own ``/health`` endpoints.

This module is the command layer; the work is done in lifecycle (start/stop), pidfile, process,
probe (HTTP), status_report and log_files.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from pydantic import ValidationError

from chatgate.cli.lifecycle import start_gateway, stop_gateway
from chatgate.cli.log_files import LogFollower, follow_logs, print_log_tails, select_log_files
from chatgate.cli.pidfile import pid_file, read_pid_record
from chatgate.cli.status_report import collect_status, render_status, status_exit_code
from chatgate.settings import Settings, parse_engine_spec


def serve_command(args: list[str]) -> list[str]:
    """The foreground command that `start` runs detached. Tests replace this with a fake server."""
    return [sys.executable, "-m", "chatgate", "serve", *args]


# --------------------------------------------------------------------------- settings & arguments


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid chatgate configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def build_serve_args(
    host: str | None, port: int | None, workers: int | None, engines: list[str], no_embedded: bool
) -> list[str]:
    args: list[str] = []
    if host is not None:
        args += ["--host", host]
    if port is not None:
        args += ["--port", str(port)]
    if workers is not None:
        args += ["--workers", str(workers)]
    for spec in engines:
        args += ["--engine", spec]
    if no_embedded:
        args.append("--no-embedded")
    return args


# --------------------------------------------------------------------------- typer commands

HostOption = Annotated[str | None, typer.Option(help="Bind address (default: CHATGATE_HOST).")]
PortOption = Annotated[int | None, typer.Option(help="Port (default: CHATGATE_PORT).")]
WorkersOption = Annotated[int | None, typer.Option(help="Worker processes.")]
EngineOption = Annotated[
    list[str] | None,
    typer.Option("--engine", help="Attach an engine started elsewhere: NAME=URL (repeatable)."),
]
NoEmbeddedOption = Annotated[
    bool, typer.Option("--no-embedded", help="Do not start the embedded engine.")
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until the gateway answers /health.")
]
StartTimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for /health before giving up.")
]


def start(
    host: HostOption = None,
    port: PortOption = None,
    workers: WorkersOption = None,
    engine: EngineOption = None,
    no_embedded: NoEmbeddedOption = False,
    wait: WaitOption = True,
    timeout: StartTimeoutOption = 900.0,
) -> None:
    """Start the gateway in the background (pid file, log in the data dir's logs/)."""
    engines = engine or []
    for spec in engines:
        try:
            parse_engine_spec(spec)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--engine") from exc
    serve_args = build_serve_args(host, port, workers, engines, no_embedded)
    start_gateway(load_settings(), serve_args, serve_command(serve_args), wait, timeout)


_STOP_HELP = (
    "Seconds to wait after SIGTERM before SIGKILL (default: CHATGATE_SHUTDOWN_GRACE_SECONDS "
    "plus a margin for the embedded engine to stop)."
)

def stop(
    timeout: Annotated[float | None, typer.Option(help=_STOP_HELP)] = None,
) -> None:
    """Stop the background gateway (SIGTERM, then SIGKILL after --timeout)."""
    stop_gateway(load_settings(), timeout)


def restart(
    stop_timeout: Annotated[float | None, typer.Option(help=_STOP_HELP)] = None,
    wait: WaitOption = True,
    timeout: StartTimeoutOption = 900.0,
) -> None:
    """Stop the gateway and start it again with the arguments it was started with."""
    settings = load_settings()
    record = read_pid_record(pid_file(settings))
    serve_args = record.serve_args if record else []
    if record is None:
        typer.echo("No recorded start arguments; starting with defaults.")
    stop_gateway(settings, stop_timeout)
    start_gateway(settings, serve_args, serve_command(serve_args), wait, timeout)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show gateway, engines, database, Redis and GPUs.

    Exit code 0: running and ready; 1: running but not ready; 3: not running.
    """
    report = collect_status(load_settings())
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        for line in render_status(report):
            typer.echo(line)
    raise typer.Exit(status_exit_code(report))


def logs(
    service: Annotated[
        str, typer.Argument(help="gateway, engine (all engines), all, or an engine's name.")
    ] = "all",
    lines: Annotated[int, typer.Option("-n", "--lines", help="Lines to show per file.")] = 100,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
) -> None:
    """Print the last lines of the gateway and/or engine logs."""
    log_dir = load_settings().log_dir
    paths = select_log_files(log_dir, service)
    if not paths and not (follow and service in ("engine", "all")):
        typer.echo(f"error: no {service} log in {log_dir} (has chatgate been started?)", err=True)
        raise typer.Exit(1)
    # Fix each file's offset first: the tail ends there and --follow goes on from there, so a
    # line written in between is printed exactly once.
    followers = {path: LogFollower(path, path.stat().st_size) for path in paths}
    print_log_tails(followers, lines)
    if follow:
        follow_logs(log_dir, service, followers)


def register(app: typer.Typer) -> None:
    """Add start, stop, restart, status and logs to the chatgate CLI."""
    app.command()(start)
    app.command()(stop)
    app.command()(restart)
    app.command()(status)
    app.command()(logs)

"""Starting and stopping the background gateway (what `start`, `stop` and `restart` do).

Start launches the serve command detached in its own session (so one signal to the process group
reaches everything it started), records it in the pid file, appends its output to the gateway log
and, when asked, waits for ``/health``. Stop signals that group and then any engine it left behind.
"""

from __future__ import annotations

import datetime as dt
import re
import signal
import time
from pathlib import Path

import typer

from chatgate.cli.log_files import LogFollower, gateway_log
from chatgate.cli.pidfile import PidRecord, live_record, pid_file, write_pid_record
from chatgate.cli.probe import base_url, health_ok
from chatgate.cli.process import (
    KILL_GRACE_SECONDS,
    POLL_SECONDS,
    pid_alive,
    process_start_ticks,
    process_started_epoch,
    signal_target,
    spawn_detached,
    terminate,
)
from chatgate.cli.status_report import read_engine_states
from chatgate.settings import Settings

PROGRESS_EVERY_SECONDS = 5.0
LOG_TAIL_ON_FAILURE = 40

# Start-up log lines worth echoing while we wait; the rest stays in the log file.
INTERESTING_LINE = re.compile(
    r"error|warn|exception|traceback|fail|engine|ready|migrat|listening|serving|running on|started",
    re.IGNORECASE,
)
# The first-run admin password line is never echoed (it would land in terminal scrollback and
# CI logs); start only says where to find it.
ADMIN_PASSWORD_LINE = re.compile(r"admin.*password|password.*admin", re.IGNORECASE)


def target_address(settings: Settings, serve_args: list[str]) -> tuple[str, int]:
    """The host and port `serve` will bind: its --host/--port arguments, else the settings."""
    host, port = settings.host, settings.port
    for flag, value in zip(serve_args, serve_args[1:], strict=False):
        if flag == "--host":
            host = value
        elif flag == "--port":
            port = int(value)
    return host, port


def start_gateway(
    settings: Settings, serve_args: list[str], command: list[str], wait: bool, timeout: float
) -> None:
    """Launch command (serve with serve_args) in the background; with wait, until /health works."""
    record = live_record(settings)
    if record is not None:
        typer.echo(
            f"error: chatgate is already running (pid {record.pid}, {record.url}); "
            "use `chatgate stop` or `chatgate restart`",
            err=True,
        )
        raise typer.Exit(1)
    host, port = target_address(settings, serve_args)
    url = base_url(host, port)
    if health_ok(url):
        typer.echo(
            f"error: something already answers at {url} but is not recorded in "
            f"{pid_file(settings)}: is a foreground `chatgate serve` running?",
            err=True,
        )
        raise typer.Exit(1)
    record, log_offset = _launch(settings, serve_args, command, host, port)
    typer.echo(f"Started chatgate (pid {record.pid}); log: {gateway_log(settings)}")
    if not wait:
        typer.echo(f"Not waiting for start-up; check with `chatgate status`. URL: {url}")
        return
    _wait_until_healthy(settings, record, log_offset, timeout)
    typer.echo(f"chatgate is up at {url}")
    if _log_mentions_admin_password(gateway_log(settings), log_offset):
        typer.echo(
            f"The admin's first-run password is in {gateway_log(settings)} "
            "(the line mentioning the admin password); change it after logging in."
        )


def _launch(
    settings: Settings, serve_args: list[str], command: list[str], host: str, port: int
) -> tuple[PidRecord, int]:
    """Spawn the serve command and write the pid file; returns the record and the log offset."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    log_path = gateway_log(settings)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"----- chatgate start {started_at}: {' '.join(command)}\n")
    log_offset = log_path.stat().st_size
    try:
        pid = spawn_detached(command, log_path)
    except OSError as exc:
        typer.echo(f"error: could not run {command[0]}: {exc}", err=True)
        raise typer.Exit(1) from exc
    record = PidRecord(
        pid=pid,
        host=host,
        port=port,
        started_at=started_at,
        argv=command,
        serve_args=serve_args,
        start_ticks=process_start_ticks(pid),
    )
    write_pid_record(pid_file(settings), record)
    return record, log_offset


def _wait_until_healthy(
    settings: Settings, record: PidRecord, log_offset: int, timeout: float
) -> None:
    log_path = gateway_log(settings)
    follower = LogFollower(log_path, log_offset)
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY_SECONDS
    typer.echo(f"Waiting for {record.url}/health (the first start loads the model) ...")
    while not health_ok(record.url):
        _echo_interesting(follower.new_lines())
        if not record.alive():
            pid_file(settings).unlink(missing_ok=True)
            # Whatever serve had started (an engine server) must not outlive it. The group id
            # cannot be handed to a new process while the group exists, so this is safe.
            signal_target(record.pid, signal.SIGTERM, group=True)
            _fail_start(log_path, log_offset, "chatgate exited during start-up.")
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            _fail_start(
                log_path,
                log_offset,
                f"chatgate did not answer {record.url}/health within {timeout:g}s. It is still "
                f"running (pid {record.pid}): watch `chatgate logs -f` or run `chatgate stop`.",
            )
        if time.monotonic() >= next_progress:
            typer.echo(f"  still starting ... {elapsed:.0f}s")
            next_progress += PROGRESS_EVERY_SECONDS
        time.sleep(POLL_SECONDS)
    _echo_interesting(follower.new_lines())


def _echo_interesting(lines: list[str]) -> None:
    for line in lines:
        if INTERESTING_LINE.search(line) and not ADMIN_PASSWORD_LINE.search(line):
            typer.echo(f"  | {line}")


def _fail_start(log_path: Path, log_offset: int, reason: str) -> None:
    lines = LogFollower(log_path, log_offset).new_lines()[-LOG_TAIL_ON_FAILURE:]
    typer.echo(f"error: {reason}", err=True)
    if lines:
        typer.echo(f"Last lines of {log_path}:", err=True)
        for line in lines:
            typer.echo(f"  | {line}", err=True)
    raise typer.Exit(1)


def _log_mentions_admin_password(log_path: Path, log_offset: int) -> bool:
    lines = LogFollower(log_path, log_offset).new_lines()
    return any(ADMIN_PASSWORD_LINE.search(line) for line in lines)


# --------------------------------------------------------------------------- stop


# After the gateway's own drain (its grace period): the embedded engine stops, the
# process exits. A SIGKILL before then would cut the drain that SIGTERM started.
STOP_MARGIN_SECONDS = 15.0


def stop_gateway(settings: Settings, timeout: float | None) -> None:
    """Stop the recorded gateway (if any), then any engine it left behind. Exits 1 on failure.
    ``timeout``: before SIGKILL; by default the gateway's grace period plus a margin."""
    if timeout is None:
        timeout = settings.shutdown_grace_seconds + STOP_MARGIN_SECONDS
    path = pid_file(settings)
    record = live_record(settings)
    if record is None:
        typer.echo("chatgate is not running.")
        return
    typer.echo(f"Stopping chatgate (pid {record.pid}) ...")
    if not terminate(record.pid, timeout, "chatgate"):
        typer.echo(f"error: chatgate (pid {record.pid}) survived SIGKILL; pid file kept", err=True)
        raise typer.Exit(1)
    path.unlink(missing_ok=True)
    _stop_leftover_engines(settings, record)
    typer.echo("chatgate stopped.")


def _stop_leftover_engines(settings: Settings, gateway: PidRecord) -> None:
    """Stop engine servers that outlived the gateway (it was killed before it could stop them).

    Only processes started after the gateway count: an old state file may name a pid that the
    system has since given to an unrelated process.
    """
    for state in read_engine_states(settings.run_dir):
        pid = state.get("pid")
        if not isinstance(pid, int) or not pid_alive(pid):
            continue
        started = process_started_epoch(pid)
        if started is None or started < gateway.started_epoch() - 1:
            continue
        name = state.get("name", "?")
        if terminate(pid, KILL_GRACE_SECONDS, f"engine {name}"):
            typer.echo(f"Stopped leftover engine {name} (pid {pid}).")
        else:
            typer.echo(f"warning: engine {name} (pid {pid}) is still running", err=True)

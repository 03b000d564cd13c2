"""The pid file (``run_dir/chatgate.pid``): a JSON record of the gateway `chatgate start` ran."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import typer

from chatgate.cli.probe import base_url
from chatgate.cli.process import pid_alive
from chatgate.settings import Settings

PID_FILE_NAME = "chatgate.pid"


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / PID_FILE_NAME


@dataclass
class PidRecord:
    pid: int
    host: str
    port: int
    started_at: str
    argv: list[str]
    serve_args: list[str] = field(default_factory=list)
    start_ticks: int | None = None

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start_ticks)

    def started_epoch(self) -> float:
        return dt.datetime.fromisoformat(self.started_at).timestamp()


def read_pid_record(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text())
        return PidRecord(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        typer.echo(
            f"error: the pid file {path} is unreadable ({exc}); "
            "remove it once you are sure no chatgate is running",
            err=True,
        )
        raise typer.Exit(1) from exc


def write_pid_record(path: Path, record: PidRecord) -> None:
    # Write-then-rename so a concurrent reader never sees half a file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    tmp.replace(path)


def live_record(settings: Settings) -> PidRecord | None:
    """The recorded gateway if it still runs; a stale pid file is removed (and said so)."""
    path = pid_file(settings)
    record = read_pid_record(path)
    if record is None or record.alive():
        return record
    path.unlink(missing_ok=True)
    typer.echo(f"Removed stale pid file {path} (pid {record.pid} is no longer running).", err=True)
    return None

"""The gateway and engine log files: choosing them, tailing them and following new lines."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from chatgate.cli.process import POLL_SECONDS
from chatgate.settings import Settings

GATEWAY_LOG_NAME = "gateway.log"
ENGINE_LOG_GLOB = "engine-*.log"


def gateway_log(settings: Settings) -> Path:
    return settings.log_dir / GATEWAY_LOG_NAME


class LogFollower:
    """Reads lines appended to a file since a given offset; copes with truncation/rotation."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced: start again from the top
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        self.offset += len(chunk)
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in complete]


def tail_lines(
    path: Path, count: int, end: int | None = None, block_size: int = 65536
) -> list[str]:
    """The last count lines of path before byte offset end (default: the end of the file).

    Reads backwards from the end so large logs stay cheap.
    """
    if count <= 0:
        return []
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END) if end is None else end
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(block_size, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:]


def engine_log_files(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob(ENGINE_LOG_GLOB))


def select_log_files(log_dir: Path, service: str) -> list[Path]:
    """Log files for SERVICE: gateway, engine (all engines), all, or one engine's name."""
    gateway = log_dir / GATEWAY_LOG_NAME
    if service == "gateway":
        candidates = [gateway]
    elif service == "engine":
        candidates = engine_log_files(log_dir)
    elif service == "all":
        candidates = [gateway, *engine_log_files(log_dir)]
    else:
        candidates = [log_dir / f"engine-{service}.log"]
    return [path for path in candidates if path.is_file()]


def follow_logs(log_dir: Path, service: str, followers: dict[Path, LogFollower]) -> None:
    """Print lines appended to the selected logs until Ctrl-C; new engine logs are picked up."""
    labelled = service in ("engine", "all")
    try:
        while True:
            for path in select_log_files(log_dir, service):
                followers.setdefault(path, LogFollower(path))
            for path, follower in followers.items():
                for line in follower.new_lines():
                    typer.echo(f"[{path.stem}] {line}" if labelled else line)
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        return  # Ctrl-C is how the user ends --follow


def print_log_tails(followers: dict[Path, LogFollower], count: int) -> None:
    for index, (path, follower) in enumerate(followers.items()):
        if len(followers) > 1:
            typer.echo(("\n" if index else "") + f"==> {path} <==")
        for line in tail_lines(path, count, end=follower.offset):
            typer.echo(line)

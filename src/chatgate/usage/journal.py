"""A local append-only journal for what the database cannot take right now.

Usage rows and final web-chat answers that could not be committed are appended here
(one JSON line each, fsync per batch) and replayed when the database is back, or at the
next start after a crash. Replay is idempotent: every entry carries the key its row is
written under, so an entry replayed twice (a crash mid-replay) still makes one row.

Files: ``<dir>/<owner>-<n>.jsonl``, one writer per file. The writer holds an exclusive
``flock`` on its open segment; a segment whose lock can be taken has no live writer, so
whoever takes it may replay it and delete it (locks die with their process, kill -9
included). Gateways sharing a data directory (``--workers N``) therefore never replay a
segment that is still being written, and never lose one whose writer died.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson

log = logging.getLogger("chatgate.journal")

EntryKind = Literal["usage", "message", "checkpoint", "progress"]
SUFFIX = ".jsonl"


class JournalFull(Exception):
    """The journal reached its size bound: nothing more can be kept safely."""


@dataclass(frozen=True)
class Entry:
    kind: EntryKind
    data: dict[str, Any]
    at: float  # wall-clock time it was journaled

    def line(self) -> bytes:
        return orjson.dumps({"kind": self.kind, "at": self.at, "data": self.data}) + b"\n"


@dataclass
class Segment:
    """A closed segment claimed for replay (its lock is held until ``done``)."""

    path: Path
    handle: BinaryIO
    entries: list[Entry]

    def done(self) -> None:
        """Everything in it is in the database: remove it, then let the lock go."""
        self.path.unlink(missing_ok=True)
        self.handle.close()

    def release(self) -> None:
        self.handle.close()


class Journal:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._sequence = 0
        self._active: BinaryIO | None = None
        self._active_path: Path | None = None

    def append(self, entries: list[Entry]) -> None:
        """Write and fsync ``entries`` (blocking: run it in a thread)."""
        data = b"".join(entry.line() for entry in entries)
        held = self.size_bytes()
        if held + len(data) > self.max_bytes:
            raise JournalFull(
                f"the journal in {self.directory} holds {held} bytes "
                f"(bound {self.max_bytes}); {len(entries)} entries could not be kept"
            )
        handle = self._active or self._open_segment()
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())

    def seal(self) -> None:
        """Close the segment being written, so the next replay may take it."""
        if self._active is not None:
            self._active.close()  # releases the lock
            self._active = None
            self._active_path = None

    def claim(self) -> Iterator[Segment]:
        """Segments nobody is writing, locked for the caller, oldest first."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob(f"*{SUFFIX}"), key=_mtime):
            if path == self._active_path:
                continue
            handle = _try_lock(path)
            if handle is None:
                continue  # a live writer (or another replayer) has it
            yield Segment(path, handle, list(_read_entries(handle, path)))

    def size_bytes(self) -> int:
        if not self.directory.is_dir():
            return 0
        total = 0
        for path in self.directory.glob(f"*{SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def _open_segment(self) -> BinaryIO:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sequence += 1
        path = self.directory / f"{self.owner}-{self._sequence:06d}{SUFFIX}"
        # Locked under a temporary name, then renamed: a replayer can never take (and
        # delete) a segment between its creation and its writer's lock.
        tmp = path.with_suffix(".new")
        handle = tmp.open("ab")
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        tmp.rename(path)
        _fsync_directory(self.directory)
        self._active, self._active_path = handle, path
        return handle


def new_entry(kind: EntryKind, data: dict[str, Any]) -> Entry:
    return Entry(kind, data, time.time())


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _try_lock(path: Path) -> BinaryIO | None:
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    if not path.exists():  # replayed and removed by someone else meanwhile
        handle.close()
        return None
    return handle


def _read_entries(handle: BinaryIO, path: Path) -> Iterator[Entry]:
    for number, line in enumerate(handle.read().split(b"\n"), start=1):
        if not line:
            continue
        try:
            raw = orjson.loads(line)
            yield Entry(raw["kind"], raw["data"], float(raw["at"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            # Only a write cut by a crash ends a segment mid-line; that batch was never
            # acknowledged, so its rows are still owed by their (dead) request.
            log.error("journal %s line %d is not a complete entry; skipped", path.name, number)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The local journal and its replay: durable, exactly-once in effect, never taken from a
live writer; and the database health verdicts that decide when it is used."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
import pytest_asyncio
from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.db.health import DatabaseHealth, is_outage
from chatgate.db.models import RequestLog
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.observability.metrics import Metrics
from chatgate.usage.journal import Journal, JournalFull, Segment, new_entry
from chatgate.usage.outbox import Outbox, usage_entry
from chatgate.usage.record import UsageRecord
from chatgate.usage.service import UsageWriter
from tests.conftest import _migrated_url
from tests.usage.test_usage_writer import row


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def sessionmaker(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async for url in _migrated_url(request.param, tmp_path):
        db = make_engine(url)
        async with db.begin() as conn:
            await conn.execute(delete(RequestLog))
        yield make_sessionmaker(db)
        await db.dispose()


async def count_rows(sessionmaker: async_sessionmaker[AsyncSession], request_id: str) -> int:
    async with sessionmaker() as db:
        query = select(func.count()).where(RequestLog.request_id == request_id)
        return int((await db.execute(query)).scalar_one())


def test_entries_survive_and_a_cut_last_line_is_skipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path, 1 << 20)
    journal.append([new_entry("usage", {"n": 1}), new_entry("usage", {"n": 2})])
    journal.seal()
    segment_path = next(tmp_path.glob("*.jsonl"))
    with segment_path.open("ab") as handle:
        handle.write(b'{"kind": "usage", "at": 1.0, "da')  # a write cut by kill -9
    segments = list(Journal(tmp_path, 1 << 20).claim())
    assert [[e.data["n"] for e in s.entries] for s in segments] == [[1, 2]]
    journal.seal()
    segments[0].done()
    assert not list(tmp_path.glob("*.jsonl"))


def test_a_live_writers_segment_is_never_claimed(tmp_path: Path) -> None:
    writer = Journal(tmp_path, 1 << 20)
    writer.append([new_entry("usage", {"n": 1})])
    assert list(Journal(tmp_path, 1 << 20).claim()) == []  # its writer holds the lock
    writer.seal()
    claimed = list(Journal(tmp_path, 1 << 20).claim())
    assert len(claimed) == 1
    # While one replayer holds a segment, a second one skips it.
    assert list(Journal(tmp_path, 1 << 20).claim()) == []
    claimed[0].release()
    writer.seal()


def test_a_killed_writers_segment_is_claimed(tmp_path: Path) -> None:
    # The lock dies with its process, kill -9 included.
    code = (
        "import os, signal, sys; from pathlib import Path; "
        "from chatgate.usage.journal import Journal, new_entry; "
        f"j = Journal(Path({str(tmp_path)!r}), 1 << 20); "
        "j.append([new_entry('usage', {'n': 7})]); "
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=60)
    segments = list(Journal(tmp_path, 1 << 20).claim())
    assert [e.data["n"] for s in segments for e in s.entries] == [7]
    for segment in segments:
        segment.release()


def test_the_bound_is_kept(tmp_path: Path) -> None:
    journal = Journal(tmp_path, 1024 * 1024)
    big = {"blob": "x" * 600_000}
    journal.append([new_entry("usage", big)])
    with pytest.raises(JournalFull):
        journal.append([new_entry("usage", big)])
    journal.seal()


def test_outage_errors_are_told_from_query_errors() -> None:
    assert is_outage(ConnectionRefusedError(111, "refused"))
    wrapped = OperationalError("SELECT 1", {}, ConnectionResetError())
    assert is_outage(wrapped)

    class ShuttingDown(Exception):
        sqlstate = "57P01"  # admin_shutdown

    assert is_outage(DBAPIError("SELECT 1", {}, ShuttingDown()))
    assert not is_outage(IntegrityError("INSERT", {}, Exception("duplicate key")))
    assert not is_outage(ValueError("bad"))
    # The connect to every address of a host failed (asyncio: no errno): an outage.
    assert is_outage(OSError("Multiple exceptions: [Errno 111] Connect call failed"))
    assert is_outage(TimeoutError())
    # A file name a client made too long is no database outage (it was a 503 before).
    assert not is_outage(OSError(errno.ENAMETOOLONG, "File name too long"))
    assert not is_outage(FileNotFoundError(errno.ENOENT, "no such file"))


def test_health_is_told_once_per_outage() -> None:
    now = [100.0]
    changes: list[bool] = []
    health = DatabaseHealth(clock=lambda: now[0], on_change=changes.append)
    health.failed(ConnectionRefusedError())
    now[0] = 112.5
    health.failed(ConnectionRefusedError())
    assert health.down_for() == 12.5 and not health.available
    health.ok()
    health.ok()
    assert changes == [False, True] and health.outages == 1


async def test_replay_is_idempotent_and_keeps_the_time(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    item = row()
    entry = usage_entry(item)
    assert item.record_key and item.record_key.startswith("journal:")
    journal = Journal(tmp_path, 1 << 20)
    outbox = Outbox(journal, sessionmaker, DatabaseHealth(), Metrics())
    await outbox.put([entry])
    # The same entry in a second segment: what a replay cut by a crash leaves behind.
    await outbox.put([entry])
    assert outbox.depth == 2
    assert await outbox.replay() == 2
    assert await count_rows(sessionmaker, item.request_id) == 1
    assert outbox.depth == 0 and not list(tmp_path.glob("*.jsonl"))
    async with sessionmaker() as db:
        stored = (await db.execute(select(RequestLog))).scalar_one()
    assert abs(stored.created_at.timestamp() - entry.data["created_at"]) < 1
    await outbox.close()


async def test_writer_journals_while_the_database_is_down_then_replays(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    health = DatabaseHealth()
    metrics = Metrics()
    outbox = Outbox(Journal(tmp_path, 1 << 20), sessionmaker, health, metrics)
    writer = UsageWriter(sessionmaker, metrics=metrics, outbox=outbox, health=health)
    writer.start()
    try:
        health.failed(ConnectionRefusedError(111, "refused"))  # seen down by a request
        items = [row() for _ in range(3)]
        # record() returns: the rows are durable (journaled), not lost after retries.
        await asyncio.wait_for(asyncio.gather(*(writer.record(i) for i in items)), 30)
        assert outbox.depth == 3
        assert metrics.journal_entries._value.get() == 3  # noqa: SLF001
        assert await outbox.replay() == 3
        assert health.available
        for item in items:
            assert await count_rows(sessionmaker, item.request_id) == 1
        assert metrics.journal_replayed._value.get() == 3  # noqa: SLF001
    finally:
        await writer.close()
        await outbox.close()


async def test_a_segment_locked_elsewhere_waits(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    other = Journal(tmp_path, 1 << 20)
    other.append([usage_entry(row(request_id=f"held-{uuid.uuid4().hex}"))])
    outbox = Outbox(Journal(tmp_path, 1 << 20), sessionmaker, DatabaseHealth(), Metrics())
    assert await outbox.replay() == 0  # another live gateway still writes it
    assert other._active is not None  # noqa: SLF001
    fcntl.flock(other._active.fileno(), fcntl.LOCK_UN)  # noqa: SLF001 - as if it exited
    assert await outbox.replay() == 1
    other.seal()
    await outbox.close()


async def test_a_running_stream_is_billed_only_if_its_gateway_dies(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    alive = Outbox(Journal(tmp_path, 1 << 20), sessionmaker, DatabaseHealth(), Metrics())
    tokens = [3]

    def snapshot() -> UsageRecord:
        return row(
            request_id="streaming", status="interrupted", completion_tokens=tokens[0],
            record_key="v1:streaming",
        )  # fmt: skip

    alive.track("v1:streaming", snapshot)
    await alive.replay()  # journals the stream as it stands
    tokens[0] = 9
    await alive.replay()  # its older snapshot is its own: obsolete, never a row
    assert await count_rows(sessionmaker, "streaming") == 0
    alive.journal.seal()  # as a kill -9 would: the lock goes, the last snapshot stays
    heir = Outbox(Journal(tmp_path, 1 << 20), sessionmaker, DatabaseHealth(), Metrics())
    await heir.replay()
    async with sessionmaker() as db:
        billed = (await db.execute(select(RequestLog))).scalar_one()
    assert (billed.status, billed.completion_tokens) == ("interrupted", 9)
    # Had the stream's own row come (say, journaled too), it replaces the guess.
    final = row(request_id="streaming", completion_tokens=12, record_key="v1:streaming")
    await heir.put([usage_entry(final)])
    await heir.replay()
    async with sessionmaker() as db:
        rows = (await db.execute(select(RequestLog))).scalars().all()
    assert [(r.status, r.completion_tokens) for r in rows] == [("ok", 12)]
    await heir.close()


async def test_a_finished_stream_leaves_nothing_to_bill(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    outbox = Outbox(Journal(tmp_path, 1 << 20), sessionmaker, DatabaseHealth(), Metrics())
    outbox.track("v1:done", lambda: row(request_id="done", record_key="v1:done"))
    await outbox.replay()
    outbox.untrack("v1:done")
    await outbox.replay()
    await outbox.close()
    heir = Outbox(Journal(tmp_path, 1 << 20), sessionmaker, DatabaseHealth(), Metrics())
    await heir.replay()
    assert await count_rows(sessionmaker, "done") == 0
    await heir.close()


class _SlowClaim(Journal):
    """Claims in a thread that waits for ``go``: a replay cancelled mid-claim."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, 1 << 20)
        self.entered, self.go = threading.Event(), threading.Event()

    def claim(self) -> Iterator[Segment]:
        self.entered.set()
        self.go.wait(30)
        return super().claim()


class _StuckDatabase:
    """A session that never opens: a replay cancelled while writing."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    def __call__(self) -> _StuckDatabase:
        return self

    async def __aenter__(self) -> None:
        self.entered.set()
        await asyncio.Event().wait()

    async def __aexit__(self, *exc: object) -> None:
        return None


def _claimable(directory: Path) -> int:
    segments = list(Journal(directory, 1 << 20).claim())
    for segment in segments:
        segment.release()
    return len(segments)


async def test_a_replay_cut_while_claiming_lets_go_of_its_segments(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    left = Journal(tmp_path, 1 << 20)
    left.append([usage_entry(row())])
    left.seal()
    journal = _SlowClaim(tmp_path)
    outbox = Outbox(journal, sessionmaker, DatabaseHealth(), Metrics())
    task = asyncio.create_task(outbox.replay())
    assert await asyncio.to_thread(journal.entered.wait, 30)
    task.cancel()
    journal.go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Its lock was let go: a later pass (or another gateway) takes the segment.
    assert _claimable(tmp_path) == 1


async def test_a_replay_cut_while_writing_lets_go_of_its_segments(tmp_path: Path) -> None:
    left = Journal(tmp_path, 1 << 20)
    left.append([usage_entry(row())])
    left.seal()
    stuck = _StuckDatabase()
    database = cast("async_sessionmaker[AsyncSession]", stuck)
    outbox = Outbox(Journal(tmp_path, 1 << 20), database, DatabaseHealth(), Metrics())
    task = asyncio.create_task(outbox.replay())
    await asyncio.wait_for(stuck.entered.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _claimable(tmp_path) == 1

"""What was served but could not be stored yet: journaled, then replayed exactly once.

The usage writer and the web chat's final save hand their rows here when the database
refuses them (or is known to be down); ``put`` returns once they are fsynced to the
journal, so the request can end as if they were committed. A replay loop writes them to
the database when it is back (and at start-up, for segments a crashed gateway left);
usage rows are keyed, answers are plain updates, so a replay cut by a crash and repeated
still makes one row each. Nothing is dropped after N retries: an entry leaves the
journal only when the database took it, or refused it for good (logged with the entry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.chat.answers import Checkpoint, FinalAnswer, save_checkpoint, save_final
from chatgate.db.health import DatabaseHealth, is_outage
from chatgate.observability.metrics import Metrics
from chatgate.usage.journal import Entry, Journal, Segment, new_entry
from chatgate.usage.record import UsageRecord
from chatgate.usage.rows import insert_rows

log = logging.getLogger("chatgate.journal")

REPLAY_INTERVAL = 2.0
NEAR_FULL = 0.8
CHECKPOINT_TIMEOUT = 5.0


def usage_entry(row: UsageRecord) -> Entry:
    """A usage row for the journal, keyed so that its replay is idempotent."""
    if row.record_key is None:
        row.record_key = f"journal:{uuid.uuid4().hex}"
    return new_entry("usage", {**vars(row), "created_at": time.time()})


# A stream's usage row as it stands, saved while it runs: billed if its gateway dies.
GATEWAY_LOST = "The gateway stopped during this answer (billed as far as it got)"
Snapshot = Callable[[], UsageRecord]


def answer_entry(answer: FinalAnswer) -> Entry:
    return new_entry("message", {**vars(answer)})


def checkpoint_entry(checkpoint: Checkpoint) -> Entry:
    return new_entry("checkpoint", {**vars(checkpoint)})


def progress_entry(row: UsageRecord) -> Entry:
    return new_entry("progress", {**vars(row), "created_at": time.time()})


class Outbox:
    def __init__(
        self,
        journal: Journal,
        sessionmaker: async_sessionmaker[AsyncSession],
        health: DatabaseHealth,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self._sessionmaker = sessionmaker
        self._health = health
        self._metrics = metrics
        self._clock = clock
        self._lock = asyncio.Lock()  # one writer of the open segment at a time
        self._task: asyncio.Task[None] | None = None
        self._warned_full = False
        # Streams running now (key -> their usage row as it stands): journaled every pass,
        # so a kill -9 still bills each (``track``).
        self._live: dict[str, Snapshot] = {}
        self.depth = 0  # entries journaled and not yet replayed, as far as this process knows
        self.oldest: float | None = None
        self.replayed = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._replay_forever(), name="journal-replay")

    async def close(self) -> None:
        """Stop replaying; what is still journaled waits for the next start."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        async with self._lock:
            self.journal.seal()
        if self.depth:
            log.warning("%d journaled entries wait for the database (next start)", self.depth)

    async def put(self, entries: list[Entry]) -> None:
        """Make ``entries`` durable in the journal (raises ``JournalFull``/``OSError``)."""
        async with self._lock:
            await asyncio.to_thread(self.journal.append, entries)
        if self.depth == 0:
            self.oldest = entries[0].at
        self.depth += len(entries)
        self._metrics.journal_written.inc(len(entries))
        self._observe()

    def track(self, key: str, snapshot: Snapshot) -> None:
        """A stream that is running: every replay pass journals ``snapshot()`` (a usage
        row keyed ``key``, status interrupted), replayed only if this gateway dies before
        the stream's own row (same key, which replaces it) is written. Nothing per token."""
        self._live[key] = snapshot

    def untrack(self, key: str) -> None:
        self._live.pop(key, None)

    async def save_answer(self, answer: FinalAnswer) -> bool:
        """Save a finished answer, or journal it; False if it had to be journaled."""
        if self._health.available:
            try:
                async with self._sessionmaker() as db:
                    await save_final(db, answer)
                    await db.commit()
                return True
            except Exception as exc:
                if not is_outage(exc):
                    raise
                self._health.failed(exc)
        await self.put([answer_entry(answer)])
        return False

    async def save_checkpoint(self, checkpoint: Checkpoint) -> bool:
        """Save a running answer's text, or journal it; False if neither worked (a
        checkpoint is best effort: the next one comes two seconds later)."""
        if self._health.available:
            try:
                async with asyncio.timeout(CHECKPOINT_TIMEOUT), self._sessionmaker() as db:
                    await save_checkpoint(db, checkpoint)
                    await db.commit()
                return True
            except Exception as exc:
                if not (is_outage(exc) or isinstance(exc, TimeoutError)):
                    log.warning("checkpoint of message %s failed", checkpoint.message_id,
                                exc_info=True)  # fmt: skip
                    return False
                self._health.failed(exc)
        try:
            await self.put([checkpoint_entry(checkpoint)])
        except Exception:
            log.exception("checkpoint of message %s could not be journaled", checkpoint.message_id)
            return False
        return True

    async def replay(self) -> int:
        """One pass over every segment this process may take; the entries written."""
        async with self._lock:
            self.journal.seal()
            await self._journal_live()
        written, remaining, oldest = 0, 0, None
        # Newest first: a dead gateway's last progress snapshot wins over its earlier ones
        # (progress never replaces a row); the other kinds do not depend on the order.
        segments = await self._claim()
        try:
            for segment in segments:
                if remaining == 0 and await self._apply(segment):
                    written += len(segment.entries)
                    await asyncio.to_thread(segment.done)
                    continue
                remaining += len(segment.entries)
                if segment.entries:
                    first = min(entry.at for entry in segment.entries)
                    oldest = first if oldest is None else min(oldest, first)
        finally:  # a pass cut by shutdown lets go of what it did not finish
            for segment in segments:
                segment.release()
        self.depth, self.oldest = remaining, oldest
        if written:
            self.replayed += written
            self._metrics.journal_replayed.inc(written)
            log.warning("replayed %d journaled entries into the database", written)
        self._observe()
        return written

    async def _claim(self) -> list[Segment]:
        """The segments this process may take, newest first. Cancelled meanwhile (shutdown),
        it waits for the claiming thread and lets go of its locks before giving up."""
        claiming = asyncio.ensure_future(
            asyncio.to_thread(lambda: list(self.journal.claim())[::-1])
        )
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            for segment in await claiming:
                segment.release()
            raise

    async def _journal_live(self) -> None:
        """The running streams' rows as they stand, into the new segment (the lock is
        held). Progress in this process's older segments is obsolete: not replayed."""
        if not self._live:
            return
        entries = [progress_entry(snapshot()) for snapshot in list(self._live.values())]
        try:
            await asyncio.to_thread(self.journal.append, entries)
        except Exception:  # best effort: the streams' own rows are what counts
            log.warning("could not journal %d running streams", len(entries), exc_info=True)

    async def _apply(self, segment: Segment) -> bool:
        # Progress entries count only when their writer died (its streams never ended).
        ours = segment.path.name.startswith(f"{self.journal.owner}-")
        entries = [e for e in segment.entries if not (ours and e.kind == "progress")]
        try:
            await _write_segment(self._sessionmaker, entries)
        except Exception as exc:
            if is_outage(exc):
                self._health.failed(exc)
            else:
                log.exception("journal %s could not be replayed", segment.path.name)
            return False
        self._health.ok()
        return True

    async def _replay_forever(self) -> None:
        while True:
            try:
                if not await self.replay() and not self._health.available:
                    await self._probe()
            except Exception:  # the loop must outlive any one bad pass
                log.exception("journal replay failed")
            await asyncio.sleep(REPLAY_INTERVAL)

    async def _probe(self) -> None:
        """Nothing to replay, yet the database was seen down: is it back?"""
        try:
            async with asyncio.timeout(5), self._sessionmaker() as db:
                await db.execute(text("SELECT 1"))
        except Exception as exc:
            self._health.failed(exc)
            return
        self._health.ok()

    def _observe(self) -> None:
        size = self.journal.size_bytes()
        self._metrics.journal_entries.set(self.depth)
        self._metrics.journal_bytes.set(size)
        age = 0.0 if self.oldest is None else max(0.0, self._clock() - self.oldest)
        self._metrics.journal_oldest_age.set(age)
        if size > NEAR_FULL * self.journal.max_bytes and not self._warned_full:
            self._warned_full = True
            log.error(
                "the journal is %.0f %% full (%d of %d bytes): the database has been "
                "unavailable for long; at 100 %% usage rows can no longer be kept",
                100 * size / self.journal.max_bytes,
                size,
                self.journal.max_bytes,
            )
        elif size <= NEAR_FULL * self.journal.max_bytes:
            self._warned_full = False


async def _write_segment(
    sessionmaker: async_sessionmaker[AsyncSession], entries: list[Entry]
) -> None:
    """A segment's entries in one transaction (answers, then usage rows). A usage row whose
    user or key was deleted meanwhile is kept without them, as ON DELETE SET NULL would
    have done had the row been there first."""
    rows = [_usage_values(entry.data) for entry in entries if entry.kind == "usage"]
    lost = [_usage_values(entry.data) for entry in entries if entry.kind == "progress"]
    try:
        await _write(sessionmaker, entries, rows, lost)
    except IntegrityError:
        await _write(sessionmaker, entries, _without_owner(rows), _without_owner(lost))


def _without_owner(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "user_id": None, "api_key_id": None} for row in rows]


async def _write(
    sessionmaker: async_sessionmaker[AsyncSession],
    entries: list[Entry],
    rows: list[dict[str, Any]],
    lost: list[dict[str, Any]],
) -> None:
    async with sessionmaker() as db:
        # In journal order: a checkpoint never lands after its answer's final save (and
        # would not apply if it did: it only updates pending answers).
        for entry in entries:
            if entry.kind == "checkpoint":
                await save_checkpoint(db, Checkpoint(**entry.data))
            elif entry.kind == "message":
                await save_final(db, FinalAnswer(**entry.data))
        if lost:  # streams of a dead gateway: never over a row the stream itself wrote
            await insert_rows(db, _latest(lost), replace=False)
        if rows:
            await insert_rows(db, rows)
        await db.commit()


def _latest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per key: the last snapshot journaled (they grow as the stream runs)."""
    return list({row["record_key"]: row for row in rows}.values())


def _usage_values(data: dict[str, Any]) -> dict[str, Any]:
    values = dict(data)
    values["created_at"] = datetime.fromtimestamp(float(values["created_at"]), UTC)
    return values

"""Group commit of usage rows.

``record`` returns only after the row is durable, so a response is never released
before its usage row: committed (rows arriving together share one transaction), or,
while the database is unavailable, fsynced to the local journal (``usage.outbox``),
which replays it when the database is back. There is no drop-on-crash buffer and no
drop after N retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.db.health import DatabaseHealth, is_outage
from chatgate.observability.metrics import Metrics
from chatgate.usage.outbox import Outbox, usage_entry
from chatgate.usage.record import UsageRecord
from chatgate.usage.rows import insert_rows

log = logging.getLogger("chatgate.usage")

MAX_BATCH = 500
# For errors of a database that answers (a serialization failure, a deadlock); an
# unreachable one sends the batch to the journal at once instead of keeping clients.
RETRY_DELAYS = (0.2, 1.0, 3.0)


_Item = tuple[UsageRecord, asyncio.Future[None] | None]


class UsageWriter:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        on_record: Callable[[UsageRecord], None] | None = None,
        metrics: Metrics | None = None,
        outbox: Outbox | None = None,
        health: DatabaseHealth | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._on_record = on_record
        self._metrics = metrics
        self._outbox = outbox
        self._health = health or DatabaseHealth()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-writer")

    async def close(self) -> None:
        """Flush everything queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None

    async def record(self, row: UsageRecord) -> None:
        """Queue the row and wait until it is committed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(row, future)
        await future

    def record_nowait(self, row: UsageRecord) -> None:
        """Queue the row for the next commit (for paths that may not wait, e.g. cancelled)."""
        self._enqueue(row, None)

    def _enqueue(self, row: UsageRecord, future: asyncio.Future[None] | None) -> None:
        if self._on_record is not None:
            self._on_record(row)
        self._queue.put_nowait((row, future))

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            error = await self._store([row for row, _ in batch])
            for row, future in batch:
                if error is not None:
                    log.error("usage row lost: %s", asdict(row))
                    if self._metrics is not None:
                        self._metrics.usage_write_failures.inc()
                if future is not None and not future.done():
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
                self._queue.task_done()

    async def _store(self, rows: list[UsageRecord]) -> BaseException | None:
        """Commit the rows, or journal them; the error if neither worked."""
        # vars(): the record is flat, so dataclasses.asdict's recursive deep copy is waste.
        pending = [dict(vars(row)) for row in rows]
        try:
            if self._health.available or self._outbox is None:
                await self._commit(pending)
                return None
        except Exception as exc:
            if self._outbox is None or not is_outage(exc):
                return exc
            self._health.failed(exc)
        assert self._outbox is not None
        try:
            # Only what is not committed yet (``_commit`` empties ``pending`` as it goes).
            await self._outbox.put([usage_entry(UsageRecord(**row)) for row in pending])
        except Exception as exc:  # the journal is full or its disk failed: say so loudly
            log.exception("usage rows could not be journaled either")
            return exc
        return None

    async def _commit(self, pending: list[dict[str, Any]]) -> None:
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            try:
                await self._insert_pending(pending)
                self._health.ok()
                return
            except Exception as exc:
                if delay is None or is_outage(exc):
                    raise
                log.warning(
                    "usage commit failed (attempt %d), retrying", attempt + 1, exc_info=True
                )
                await asyncio.sleep(delay)

    async def _insert_pending(self, pending: list[dict[str, Any]]) -> None:
        """Commit ``pending`` (emptying it as rows commit).

        A row the database refuses (its user or key deleted meanwhile) must not sink the
        rows batched with it: on an integrity error the batch is committed row by row,
        and a refused row is repaired rather than dropped.
        """
        try:
            await self._insert(pending)
            pending.clear()
            return
        except IntegrityError:
            if len(pending) > 1:
                log.warning("usage batch refused; committing its rows one by one")
        while pending:
            await self._insert_one(pending[0])
            pending.pop(0)

    async def _insert_one(self, value: dict[str, Any]) -> None:
        # A user or key deleted meanwhile is dropped from the row, as ON DELETE SET NULL
        # would have done had the row been there first.
        for variant in (value, {**value, "user_id": None, "api_key_id": None}):
            try:
                await self._insert([variant])
                return
            except IntegrityError as exc:
                error: IntegrityError = exc
        log.error("usage row refused by the database: %s (%s)", value, error.orig)
        if self._metrics is not None:
            self._metrics.usage_write_failures.inc()

    async def _insert(self, values: list[dict[str, Any]]) -> None:
        started = time.perf_counter()
        async with self._sessionmaker() as session:
            # A Core insert of the table (one executemany), not the ORM entity: the ORM's
            # bulk path adds per-row bookkeeping these plain rows do not need.
            await insert_rows(session, values)
            await session.commit()
        if self._metrics is not None:
            self._metrics.db_latency.labels("usage_commit").observe(time.perf_counter() - started)

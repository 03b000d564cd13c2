"""``async with Checkpoints(...):`` saves a running answer's text every two seconds.

One task per generation wakes every ``CHECKPOINT_SECONDS`` and saves when text arrived
(at least every ``heartbeat`` seconds regardless, which keeps the answer's lease alive
while it waits for an engine slot): nothing is written per token, and the relay's hot
loop is not touched. While the database is down the checkpoint goes to the journal, so
a gateway killed during an outage still loses at most the last two seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from chatgate.chat.answers import Checkpoint
from chatgate.engines.upstream.stream import StreamStats
from chatgate.usage.outbox import Outbox

log = logging.getLogger("chatgate.chat")

CHECKPOINT_SECONDS = 2.0


class Checkpoints:
    def __init__(
        self,
        outbox: Outbox,
        message_id: int,
        stats: StreamStats,
        token_in: int,
        heartbeat: float,
        renew: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._outbox = outbox
        self._message_id = message_id
        self._stats = stats
        self._token_in = token_in
        self._heartbeat = heartbeat
        self._renew = renew  # with Redis: the conversation lock lives as long as this does
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Checkpoints:
        self._task = asyncio.create_task(self._run(), name=f"checkpoint-{self._message_id}")
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        saved_chunks, since_save = 0, 0.0
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            since_save += CHECKPOINT_SECONDS
            await self._renew_lock()
            chunks = self._stats.content_chunks
            if chunks == saved_chunks and since_save < self._heartbeat:
                continue
            if await self._outbox.save_checkpoint(self._take()):
                saved_chunks, since_save = chunks, 0.0

    async def _renew_lock(self) -> None:
        if self._renew is None:
            return
        try:
            await self._renew()
        except Exception as exc:  # Redis away: the lock lapses, the answer runs on
            log.warning("renewing the conversation lock failed: %s", exc)

    def _take(self) -> Checkpoint:
        return Checkpoint(
            message_id=self._message_id,
            content=self._stats.text,
            token_in=self._token_in,
            token_out=self._stats.output_tokens(),
            at=time.time(),
        )

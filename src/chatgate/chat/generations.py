"""Web-chat generations run as server-side tasks, detached from any HTTP connection.

Every event a generation publishes is kept (numbered from 1) until shortly after it
finished, so a client that reconnects with ``Last-Event-ID`` gets exactly the events
it missed, then the live ones. A generation with no subscriber for too long is
stopped; finished ones are dropped after a retention window (bounded memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import orjson

from chatgate.errors import APIError

log = logging.getLogger("chatgate.chat")

SWEEP_INTERVAL = 5.0
KEEPALIVE_SECONDS = 15.0


def encode_event(event_id: int, event: str | None, data: Any) -> bytes:
    payload = data if isinstance(data, bytes) else orjson.dumps(data)
    head = f"id: {event_id}\n" + (f"event: {event}\n" if event else "")
    return head.encode() + b"data: " + payload + b"\n\n"


class Generation:
    def __init__(self, generation_id: str, user_id: int, conversation_id: str) -> None:
        self.id = generation_id
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.events: list[bytes] = []
        self.finished = False
        self.finished_at: float | None = None
        self.subscribers = 0
        self.unsubscribed_at = time.monotonic()
        self.task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()

    def publish(self, event: str | None, data: Any) -> None:
        self.events.append(encode_event(len(self.events) + 1, event, data))
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self.finished_at = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def stop(self) -> bool:
        """Ask the running task to stop; its own cleanup saves what was generated."""
        if self.task is None or self.task.done():
            return False
        self.task.cancel()
        return True

    async def stream(self, after: int = 0) -> AsyncIterator[bytes]:
        """Events numbered above ``after``, then live ones until the generation finishes."""
        self.subscribers += 1
        cursor = max(0, after)
        try:
            while True:
                if cursor < len(self.events):
                    batch = self.events[cursor:]
                    cursor += len(batch)
                    yield b"".join(batch)
                    continue
                if self.finished:
                    return
                wakeup = self._wakeup
                try:
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        await wakeup.wait()
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            self.subscribers -= 1
            self.unsubscribed_at = time.monotonic()


class GenerationManager:
    def __init__(self, orphan_seconds: float, retain_seconds: float) -> None:
        self._orphan_seconds = orphan_seconds
        self._retain_seconds = retain_seconds
        self._generations: dict[str, Generation] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def start_sweeper(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="generation-sweeper")

    def launch(self, generation: Generation, work: Coroutine[Any, Any, None]) -> None:
        self._generations[generation.id] = generation
        generation.task = asyncio.create_task(work, name=f"generation-{generation.id}")

    def get(self, generation_id: str, user_id: int) -> Generation:
        generation = self._generations.get(generation_id)
        if generation is None or generation.user_id != user_id:
            raise APIError(
                404,
                "Generation not found: it finished a while ago or never existed; "
                "load the conversation instead",
                "generation_not_found",
            )
        return generation

    def running_in(self, conversation_id: str) -> Generation | None:
        for generation in self._generations.values():
            if generation.conversation_id == conversation_id and not generation.finished:
                return generation
        return None

    @property
    def active_count(self) -> int:
        return sum(1 for g in self._generations.values() if not g.finished)

    def sweep(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for gen_id, generation in list(self._generations.items()):
            if generation.finished:
                if now - (generation.finished_at or now) > self._retain_seconds:
                    del self._generations[gen_id]
            elif generation.subscribers == 0 and (
                now - generation.unsubscribed_at > self._orphan_seconds
            ):
                log.info("stopping generation %s: no subscriber", gen_id)
                generation.stop()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self.sweep()

    async def shutdown(self, drain_seconds: float) -> None:
        """Let running generations finish within the window, then stop the rest."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = [g.task for g in self._generations.values() if g.task and not g.task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=drain_seconds)
        for task in pending:
            task.cancel()
        if pending:
            # Cancelled, each saves what it has (one UPDATE and one row, or the journal):
            # as long again at most, so the shutdown stays within its grace period.
            await asyncio.wait(pending, timeout=max(drain_seconds, 1.0))

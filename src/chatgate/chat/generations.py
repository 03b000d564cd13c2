"""Web-chat generations run as server-side tasks, detached from any HTTP connection.

Every event a generation publishes is kept (numbered from 1) until shortly after it
finished, so a client that reconnects with ``Last-Event-ID`` gets exactly the events
it missed, then the live ones. A generation with no subscriber for too long is
stopped; finished ones are dropped after a retention window (bounded memory).

The owner keeps the events in memory whatever the bus; with Redis (``chat/redis_bus.py``)
they are mirrored to a stream so any replica can serve a resume, and stop requests,
the conversation lock and dead owners are handled fleet-wide through ``self.bus``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Coroutine
from typing import TYPE_CHECKING, Any

import orjson

from chatgate.chat.bus import STOP_KIND, Followable, GenerationBus, LocalBus
from chatgate.errors import APIError

if TYPE_CHECKING:
    from chatgate.chat.streams import StreamSink
    from chatgate.fleet import FleetEvents

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
        self.sink: StreamSink | None = None  # with Redis: the events mirrored to a stream
        self._wakeup = asyncio.Event()

    def publish(self, event: str | None, data: Any) -> None:
        number = len(self.events) + 1
        encoded = encode_event(number, event, data)
        self.events.append(encoded)
        if self.sink is not None:
            self.sink.add(number, encoded)
        self._wake()

    def finish(self) -> None:
        self.finished = True
        self.finished_at = time.monotonic()
        if self.sink is not None:
            self.sink.finish()
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


def not_found() -> APIError:
    return APIError(
        404,
        "Generation not found: it finished a while ago or never existed; "
        "load the conversation instead",
        "generation_not_found",
    )


class GenerationManager:
    def __init__(
        self, orphan_seconds: float, retain_seconds: float, bus: GenerationBus | None = None
    ) -> None:
        self.bus: GenerationBus = bus or LocalBus()
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
            raise not_found()
        return generation

    async def find(self, generation_id: str, user_id: int) -> Followable:
        """This replica's generation, else (with Redis) one another replica runs or ran."""
        generation = self._generations.get(generation_id)
        if generation is not None:
            return self.get(generation_id, user_id)
        remote = await self.bus.find(generation_id, user_id)
        if remote is None:
            raise not_found()
        return remote

    async def stop(self, generation_id: str, user_id: int) -> bool:
        if generation_id in self._generations:
            return self.get(generation_id, user_id).stop()
        stopped = await self.bus.request_stop(generation_id, user_id)
        if stopped is None:
            raise not_found()
        return stopped

    async def active_in(self, conversation_id: str) -> str | None:
        """The generation answering in a conversation, on this replica or another."""
        running = self.running_in(conversation_id)
        return running.id if running is not None else await self.bus.holder(conversation_id)

    async def stop_in(self, conversation_id: str, user_id: int) -> None:
        """Stop whatever answers in a conversation (it is being deleted), wherever it runs."""
        generation_id = await self.active_in(conversation_id)
        if generation_id is not None:
            with contextlib.suppress(APIError):  # it ended meanwhile
                await self.stop(generation_id, user_id)

    def listen(self, fleet: FleetEvents | None) -> None:
        """Stop requests another replica received for a generation that runs here."""
        if fleet is not None:
            fleet.on(STOP_KIND, self._stop_local)

    def _stop_local(self, event: dict[str, Any]) -> None:
        generation = self._generations.get(str(event.get("generation", "")))
        if generation is not None:
            log.info("stopping generation %s: asked by another gateway", generation.id)
            generation.stop()

    async def claim(self, generation: Generation) -> None:
        """One generation per conversation: here, and with Redis across the fleet."""
        if self.running_in(generation.conversation_id) is not None or not await self.bus.claim(
            generation
        ):
            raise APIError(
                409,
                "An answer is still being generated in this conversation; stop it or wait",
                "generation_running",
            )

    def running_in(self, conversation_id: str) -> Generation | None:
        for generation in self._generations.values():
            if generation.conversation_id == conversation_id and not generation.finished:
                return generation
        return None

    @property
    def active_count(self) -> int:
        return sum(1 for g in self._generations.values() if not g.finished)

    def unwatched(self, now: float) -> list[str]:
        """Running generations nobody here has followed for ``orphan_seconds``."""
        return [
            gen_id
            for gen_id, generation in self._generations.items()
            if not generation.finished
            and generation.subscribers == 0
            and now - generation.unsubscribed_at > self._orphan_seconds
        ]

    def sweep(self, now: float | None = None, followed: Collection[str] = ()) -> None:
        """Drop finished generations past retention; stop unwatched ones, except those
        ``followed`` from another replica."""
        now = time.monotonic() if now is None else now
        for gen_id in self.unwatched(now):
            if gen_id not in followed:
                log.info("stopping generation %s: no subscriber", gen_id)
                self._generations[gen_id].stop()
        for gen_id, generation in list(self._generations.items()):
            if generation.finished and now - (generation.finished_at or now) > (
                self._retain_seconds
            ):
                del self._generations[gen_id]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = time.monotonic()
            try:
                followed = await self.bus.followed(self.unwatched(now), self._orphan_seconds)
            except Exception:  # Redis away: keep them this pass
                log.warning("could not ask the fleet who follows generations", exc_info=True)
                continue
            self.sweep(now, followed)

    async def shutdown(self, drain_seconds: float) -> None:
        """Let running generations finish within the window, then stop the rest."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self._drain(drain_seconds)
        await self.bus.close()

    async def _drain(self, drain_seconds: float) -> None:
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

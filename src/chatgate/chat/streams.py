"""A generation's Redis Stream: how events are stored, written and followed.

One entry per write, its id ``<number of its last event>-0`` and one field per SSE event
(``"<event number>": <encoded event>``), plus ``end`` in the last entry. So a reader with
``Last-Event-ID: n`` replays from entry ``n-0`` (``XRANGE``; it may hold the end marker),
follows with ``XREAD`` above it, and drops the events numbered ``<= n``: resume works on
any replica, and the ids a client sees are the same whoever serves it.

``StreamSink`` writes: one ``XADD`` per batch of events published between two awaits of
the runner, i.e. at most one per engine network read (never one per token), merged
further while an ``XADD`` is in flight and to at most one per ``WRITE_INTERVAL`` (the
benchmark's 23-event answers, one token per read: 11-12 entries). ``StreamHub`` reads:
one task per replica multiplexes every generation its clients follow into one blocking
``XREAD`` (one Redis connection, not one per SSE client); a new follower wakes it
through a tiny per-hub wake stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chatgate.chat.generations import encode_event

log = logging.getLogger("chatgate.chat")

END = b"end"
STREAM_MAXLEN = 10_000  # entries (engine reads): trimmed approximately beyond this
REPLAY_PAGE = 500
# At most one XADD per generation per 25 ms: an engine that sends every token in its own
# network read (10 ms apart in the benchmark) costs ~40 writes/s, not 100. Only readers on
# other replicas see the delay; the owner's clients are served from memory.
WRITE_INTERVAL = 0.025
FOLLOW_BLOCK_MS = 2_000  # under the client's socket timeout (redis-py: 5 s by default)
RETRY_SECONDS = 1.0
WAKE_TTL_SECONDS = 60

Entries = list[tuple[bytes, dict[bytes, bytes]]]
# A generation whose owner died ends with one entry of the last possible id, so every reader
# reads it, whatever it has seen: its owner's clients were served from memory and may be
# ahead of the stream. Its events are named, not numbered (``redis_bus._LOST``); each
# reader numbers them after the last event it has (``unpack``).
LOST_ENTRY_ID = b"18446744073709551615-0"
TERMINAL = (b"error", b"done")  # in this order


def unpack(entries: Entries, cursor: int) -> tuple[bytes, int, bool]:
    """(the events numbered above ``cursor``, joined; the new cursor; ended).

    A lost generation's terminal events (``LOST_ENTRY_ID``) are numbered here, after the
    reader's own cursor: the dead owner's clients may have seen events Redis never got."""
    chunks: list[tuple[int, bytes]] = []
    terminal: dict[bytes, bytes] = {}
    ended = False
    for entry_id, fields in entries:
        for name, value in fields.items():
            if name == END:
                ended = True
            elif name in TERMINAL:
                terminal[name] = value
            elif int(name) > cursor:
                chunks.append((int(name), value))
        if entry_id != LOST_ENTRY_ID:
            cursor = max(cursor, int(entry_id.split(b"-", 1)[0]))
    chunks.sort()
    for name in TERMINAL:
        if name in terminal:
            cursor += 1
            chunks.append((cursor, encode_event(cursor, name.decode(), terminal[name])))
    return b"".join(value for _, value in chunks), cursor, ended


@dataclass(frozen=True)
class SinkKeys:
    stream: str
    meta: str  # the generation's hash: ``message`` with the first write, then ``finished``
    owned: str  # message id -> generation id, for the orphan sweeper
    generation_id: str
    message_id: int


class StreamSink:
    """Mirrors one generation's events into its stream, in order, batched."""

    def __init__(self, redis: Redis, keys: SinkKeys, ttls: tuple[int, int]) -> None:
        self._redis = redis
        self._keys = keys
        self._key = keys.stream
        self._running_ttl, self._finished_ttl = ttls
        self._pending: list[tuple[int, bytes]] = []
        self._last = 0
        self._finished = False
        self._wake = asyncio.Event()
        self.writes = 0
        self.failed = False
        self.last_written = 0  # the number of the last event Redis has
        self.task = asyncio.create_task(self._run(), name=f"stream-{keys.stream}")

    def add(self, number: int, event: bytes) -> None:
        self._pending.append((number, event))
        self._wake.set()

    def finish(self) -> None:
        self._finished = True
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = 0.0
        while True:
            await self._wake.wait()
            if not self._finished and (delay := next_at - loop.time()) > 0:
                await asyncio.sleep(delay)  # more reads join this write
            self._wake.clear()
            next_at = loop.time() + WRITE_INTERVAL
            batch, self._pending = self._pending, []
            done = self._finished
            try:
                await self._write(batch, done)
            except RedisError as exc:  # the owner's own clients are served from memory
                if not self.failed:  # once per generation, not per write
                    log.warning("writing generation stream %s failed: %s", self._key, exc)
                self.failed = True
            if done:
                return

    async def _write(self, batch: list[tuple[int, bytes]], done: bool) -> None:
        fields: dict[Any, Any] = {str(n): event for n, event in batch}
        if batch:
            self._last = batch[-1][0]
            entry_id = f"{self._last}-0"
        else:
            entry_id = f"{self._last}-1"
        if done:
            fields[END] = b"1"
        if not fields:
            return
        if self.writes and not done:  # the TTLs were set with the first write
            await self._redis.xadd(
                self._key, fields, id=entry_id, maxlen=STREAM_MAXLEN, approximate=True
            )
            self._written()
            return
        keys = self._keys
        ttl = self._finished_ttl if done else self._running_ttl
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(self._key, fields, id=entry_id, maxlen=STREAM_MAXLEN, approximate=True)
            if not self.writes:
                pipe.hset(keys.meta, "message", keys.message_id)
                pipe.set(keys.owned, keys.generation_id)
            if done:
                pipe.hset(keys.meta, "finished", 1)
            for key in (keys.stream, keys.meta, keys.owned):
                pipe.expire(key, ttl)
            await pipe.execute()
        self._written()

    def _written(self) -> None:
        self.writes += 1
        self.last_written = self._last


@dataclass(eq=False)
class Follow:
    key: str
    cursor: int
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)


class StreamHub:
    """One blocking ``XREAD`` per replica for all the generations its clients follow."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._wake_key = f"{prefix}:genwake:{uuid.uuid4().hex}"
        self._wake_id = b"0-0"
        self._follows: set[Follow] = set()
        self._task: asyncio.Task[None] | None = None
        self._pokes: set[asyncio.Task[None]] = set()
        timeout = redis.connection_pool.connection_kwargs.get("socket_timeout")
        self._block_ms = FOLLOW_BLOCK_MS if not timeout else min(FOLLOW_BLOCK_MS, timeout * 500)

    def add(self, key: str, cursor: int) -> Follow:
        follow = Follow(key, cursor)
        self._follows.add(follow)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="generation-hub")
        else:
            poke = asyncio.create_task(self._poke())
            self._pokes.add(poke)
            poke.add_done_callback(self._pokes.discard)
        return follow

    def remove(self, follow: Follow) -> None:
        self._follows.discard(follow)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError):
            await self._redis.delete(self._wake_key)

    async def _poke(self) -> None:
        with contextlib.suppress(RedisError):
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._wake_key, {b"w": b"1"}, maxlen=10, approximate=False)
                pipe.expire(self._wake_key, WAKE_TTL_SECONDS)
                await pipe.execute()

    async def _run(self) -> None:
        while self._follows:
            try:
                await self._read_once()
            except RedisError as exc:
                log.warning("following generation streams failed (%s); retrying", exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _read_once(self) -> None:
        streams: dict[Any, Any] = {self._wake_key: self._wake_id}
        for follow in self._follows:
            current = streams.get(follow.key)
            cursor = follow.cursor if current is None else min(follow.cursor, current)
            streams[follow.key] = cursor
        streams = {k: (v if k == self._wake_key else f"{v}-0") for k, v in streams.items()}
        result = await self._redis.xread(streams, count=REPLAY_PAGE, block=int(self._block_ms))
        for raw_key, entries in cast(list[tuple[bytes, Entries]], result or []):
            key = raw_key.decode()
            if key == self._wake_key:
                self._wake_id = entries[-1][0]
                continue
            for follow in [f for f in self._follows if f.key == key]:
                chunk, follow.cursor, ended = unpack(entries, follow.cursor)
                if chunk:
                    follow.queue.put_nowait(chunk)
                if ended:
                    follow.queue.put_nowait(None)

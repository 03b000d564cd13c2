"""Generations shared by the replicas of a fleet (``CHATGATE_REDIS_URL`` set).

Keys, all under ``<prefix>:``:

- ``gen:<id>``: the events (``chat/streams.py``); TTL one hour while running (renewed by
  every write), ``generation_retain_seconds`` once finished.
- ``genmeta:<id>``: owner replica, user, conversation, message, finished; same TTLs. Any
  replica answers ``GET /api/chat/{id}/stream`` from it, 404 for another user's.
- ``genmsg:<message id>``: the generation of an answer, so the orphan sweeper, which
  knows only messages, can end a dead owner's generation for its readers.
- ``genconv:<conversation id>``: the conversation's one running generation (``SET NX``),
  its TTL the answer lease, renewed by the checkpoint heartbeat (every 2 s), deleted
  before ``done`` is published: a dead owner's lock lapses when its answer's lease does.

Stop from another replica goes over the fleet channel (``fleet.py``) to the owner,
which cancels the task as a local stop does (milliseconds on a LAN; bound 2 s).
Ownership itself is the answer's lease (``chat/answers.py``): one mechanism, not two.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chatgate.chat.answers import ORPHANED
from chatgate.chat.bus import STOP_KIND
from chatgate.chat.generations import KEEPALIVE_SECONDS
from chatgate.chat.streams import (
    LOST_ENTRY_ID,
    REPLAY_PAGE,
    Entries,
    SinkKeys,
    StreamHub,
    StreamSink,
    unpack,
)
from chatgate.errors import APIError, error_body

if TYPE_CHECKING:
    from chatgate.chat.answers import OrphanSweeper
    from chatgate.chat.generations import Generation
    from chatgate.fleet import FleetEvents
    from chatgate.settings import Settings

log = logging.getLogger("chatgate.chat")

RUNNING_TTL_SECONDS = 3600
TOUCH_SECONDS = 30.0  # how often a follower on another replica says it is there

# Compare-and-delete / compare-and-renew: only the holder touches the conversation lock.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end"
_RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end"
)
_TOUCH = (
    "if redis.call('EXISTS', KEYS[1]) == 1 then "
    "redis.call('HSET', KEYS[1], 'followed_at', ARGV[1]) return 1 end return 0"
)
# A dead owner's generation ends, atomically, unless it finished: `error` and `done` in the
# stream's last possible entry, which each reader numbers after what it has seen
# (streams.LOST_ENTRY_ID). An owner that was only slow fails its next write (its id is lower).
_LOST = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
if redis.call('HGET', KEYS[2], 'finished') == '1' then return 0 end
redis.call('XADD', KEYS[1], ARGV[4], 'error', ARGV[1], 'done', ARGV[2], 'end', '1')
redis.call('HSET', KEYS[2], 'finished', '1')
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


class RemoteGeneration:
    """A generation read from its stream: replay, then live through the replica's hub."""

    def __init__(self, bus: RedisBus, generation_id: str) -> None:
        self._bus = bus
        self._id = generation_id

    @property
    def id(self) -> str:
        return self._id

    def stream(self, after: int = 0) -> AsyncIterator[bytes]:
        return self._bus.read(self._id, max(0, after))


class RedisBus:
    def __init__(
        self, redis: Redis, prefix: str, lease_seconds: float, retain_seconds: float
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._lease_ms = int(lease_seconds * 1000)
        self._retain = max(1, int(retain_seconds))
        self.replica = uuid.uuid4().hex
        self.hub = StreamHub(redis, prefix)
        self.fleet: FleetEvents | None = None
        self._sinks: set[asyncio.Task[None]] = set()

    def key(self, kind: str, ident: object) -> str:
        return f"{self._prefix}:{kind}:{ident}"

    async def claim(self, generation: Generation) -> bool:
        """The conversation lock and the generation's metadata, in one round trip."""
        lock = self.key("genconv", generation.conversation_id)
        meta = self.key("genmeta", generation.id)
        fields: dict[Any, Any] = {
            "owner": self.replica,
            "user": generation.user_id,
            "conversation": generation.conversation_id,
            "finished": 0,
        }
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(lock, generation.id, nx=True, px=self._lease_ms)
                pipe.hset(meta, mapping=fields)
                pipe.expire(meta, RUNNING_TTL_SECONDS)
                taken, *_ = await pipe.execute()
            if not taken:
                await self._redis.delete(meta)
        except RedisError as exc:  # Redis away: each replica checks its own only
            log.warning("conversation lock unavailable: %s", exc)
            return True
        return bool(taken)

    async def renew(self, conversation_id: str, generation_id: str) -> None:
        key = self.key("genconv", conversation_id)
        await self._redis.eval(_RENEW, 1, key, generation_id, self._lease_ms)

    async def release(self, conversation_id: str, generation_id: str) -> None:
        try:
            key = self.key("genconv", conversation_id)
            await self._redis.eval(_RELEASE, 1, key, generation_id)
        except RedisError as exc:  # the lock lapses with the lease
            log.warning("releasing conversation lock failed: %s", exc)

    async def holder(self, conversation_id: str) -> str | None:
        try:
            held = await self._redis.get(self.key("genconv", conversation_id))
        except RedisError as exc:  # Redis away: only this replica's own are known
            log.warning("conversation lock unavailable: %s", exc)
            return None
        return held.decode() if isinstance(held, bytes) else None

    def attach(self, generation: Generation, message_id: int) -> None:
        """Mirror its events from now on (the first write also maps message -> generation)."""
        keys = SinkKeys(
            self.key("gen", generation.id),
            self.key("genmeta", generation.id),
            self.key("genmsg", message_id),
            generation.id,
            message_id,
        )
        sink = StreamSink(self._redis, keys, (RUNNING_TTL_SECONDS, self._retain))
        generation.sink = sink
        self._sinks.add(sink.task)
        sink.task.add_done_callback(self._sinks.discard)

    async def _meta(self, generation_id: str) -> dict[bytes, bytes]:
        try:
            meta = await self._redis.hgetall(self.key("genmeta", generation_id))
        except RedisError as exc:
            raise APIError(
                503, "Generations of other gateways are unavailable; retry", "fleet_unavailable"
            ) from exc
        return cast(dict[bytes, bytes], meta)

    async def find(self, generation_id: str, user_id: int) -> RemoteGeneration | None:
        meta = await self._meta(generation_id)
        if not meta or meta.get(b"user") != str(user_id).encode():
            return None
        return RemoteGeneration(self, generation_id)

    async def request_stop(self, generation_id: str, user_id: int) -> bool | None:
        meta = await self._meta(generation_id)
        if not meta or meta.get(b"user") != str(user_id).encode():
            return None
        if meta.get(b"finished") == b"1":
            return False
        if self.fleet is not None:
            self.fleet.publish(STOP_KIND, generation=generation_id)
        return True

    async def read(self, generation_id: str, after: int) -> AsyncIterator[bytes]:
        key = self.key("gen", generation_id)
        cursor, page = after, REPLAY_PAGE
        while page == REPLAY_PAGE:
            # From the entry holding event `cursor` on: it may carry the end marker.
            found = await self._redis.xrange(key, min=f"{cursor}-0", count=REPLAY_PAGE)
            entries = cast(Entries, found)
            page = len(entries)
            chunk, cursor, ended = unpack(entries, cursor)
            if chunk:
                yield chunk
            if ended:
                return
        async for chunk in self._follow(generation_id, key, cursor):
            yield chunk

    async def _follow(self, generation_id: str, key: str, cursor: int) -> AsyncIterator[bytes]:
        follow = self.hub.add(key, cursor)
        touched = 0.0
        try:
            while True:
                if time.monotonic() - touched > TOUCH_SECONDS:
                    touched = time.monotonic()
                    if not await self._touch(generation_id):
                        return  # expired with nobody left to end it
                try:
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        item = await follow.queue.get()
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if item is None:
                    return
                yield item
        finally:
            self.hub.remove(follow)

    async def _touch(self, generation_id: str) -> bool:
        """Tell the owner a client here follows it (its sweeper stops unwatched ones);
        False once the generation's metadata is gone."""
        try:
            key = self.key("genmeta", generation_id)
            return bool(await self._redis.eval(_TOUCH, 1, key, time.time()))
        except RedisError as exc:
            log.warning("following generation %s: %s", generation_id, exc)
            return True

    async def followed(self, generation_ids: list[str], within: float) -> set[str]:
        if not generation_ids:
            return set()
        async with self._redis.pipeline(transaction=False) as pipe:
            for generation_id in generation_ids:
                pipe.hget(self.key("genmeta", generation_id), "followed_at")
            seen = await pipe.execute()
        since = time.time() - within
        return {g for g, at in zip(generation_ids, seen, strict=True) if at and float(at) > since}

    async def lost(self, message_ids: list[int]) -> None:
        for message_id in message_ids:
            try:
                await self._end_lost(message_id)
            except RedisError as exc:
                log.warning("ending the generation of answer %s failed: %s", message_id, exc)

    async def _end_lost(self, message_id: int) -> None:
        raw = await self._redis.get(self.key("genmsg", message_id))
        if raw is None:
            return
        generation_id = cast(bytes, raw).decode()
        meta = await self._meta(generation_id)
        done: dict[str, Any] = {
            "status": "interrupted",
            "finish_reason": None,
            "message_id": message_id,
            "conversation_id": meta.get(b"conversation", b"").decode(),
        }
        error = error_body("server_error", ORPHANED, "generation_lost")
        keys = (self.key("gen", generation_id), self.key("genmeta", generation_id))
        args = (orjson.dumps(error), orjson.dumps(done), self._retain, LOST_ENTRY_ID)
        await self._redis.eval(_LOST, 2, *keys, *args)

    async def close(self) -> None:
        if self._sinks:  # the last events and the finished flag reach the stream
            await asyncio.wait(self._sinks, timeout=2)
        await self.hub.close()


def shared_generations(
    redis: Redis | None, fleet: FleetEvents | None, settings: Settings, orphans: OrphanSweeper
) -> RedisBus | None:
    """With Redis: the bus the gateway's generations share (None: one node, in memory).
    Stop requests arrive on the fleet channel; the orphan sweeper ends lost generations."""
    if redis is None:
        return None
    bus = RedisBus(
        redis,
        settings.redis_prefix,
        settings.answer_lease_seconds,
        settings.generation_retain_seconds,
    )
    bus.fleet = fleet
    orphans.on_ended = bus.lost
    return bus

"""A dead owner's terminal events reach every reader, whatever it had already seen.

The owner serves its own clients from memory and mirrors the events to Redis a batch later
(``chat/streams.py``), so when it dies its clients may have seen events Redis never got. The
live fleet test found that a client reloading with such a ``Last-Event-ID`` got nothing (or
``done`` without its ``error``): the terminal events were numbered after the last event in
Redis, at or below the client's cursor. Here the owner dies with 2 of its 7 events unwritten.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from chatgate.chat.generations import Generation
from chatgate.chat.redis_bus import RedisBus
from tests.helpers import parse_sse

pytestmark = pytest.mark.timeout(60)

MESSAGE_ID = 5151


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    name = f"test-lost-{uuid.uuid4().hex[:10]}"
    yield name
    keys = [key async for key in redis.scan_iter(match=f"{name}:*")]
    if keys:
        await redis.delete(*keys)


async def read(bus: RedisBus, generation_id: str, after: int) -> list[tuple[int, str, Any]]:
    remote = await bus.find(generation_id, user_id=1)
    assert remote is not None
    events = []
    async with asyncio.timeout(10):
        async for block in remote.stream(after):
            events += [(e.id, e.event, e.data) for e in parse_sse(block.decode()) if e.id]
    return events


async def dead_owner(redis: Redis, prefix: str) -> Generation:
    """An owner that published 7 events, of which Redis got 5, then died."""
    owner = RedisBus(redis, prefix, lease_seconds=4, retain_seconds=30)
    generation = Generation(uuid.uuid4().hex, 1, "conv-dead")
    assert await owner.claim(generation)
    owner.attach(generation, MESSAGE_ID)
    for n in range(5):
        generation.publish(None, {"n": n})
    sink = generation.sink
    assert sink is not None
    async with asyncio.timeout(10):
        while sink.last_written < 5:
            await asyncio.sleep(0.005)
    sink.task.cancel()  # the process is gone: what it publishes now never reaches Redis
    generation.publish(None, {"n": 5})
    generation.publish(None, {"n": 6})
    await owner.hub.close()
    return generation


@pytest.mark.parametrize("seen", [0, 3, 5, 6, 7])
async def test_every_reader_gets_error_and_done_after_what_it_saw(
    redis: Redis, prefix: str, seen: int
) -> None:
    generation = await dead_owner(redis, prefix)
    sweeper = RedisBus(redis, prefix, lease_seconds=4, retain_seconds=30)
    await sweeper.lost([MESSAGE_ID])
    events = await read(sweeper, generation.id, seen)
    known = min(seen, 5)  # Redis has events 1-5
    assert [e[0] for e in events] == list(range(seen + 1, max(seen, 5) + 3))
    assert [e[1] for e in events] == ["message"] * (5 - known) + ["error", "done"]
    assert events[-2][2]["error"]["code"] == "generation_lost"
    assert events[-1][2]["status"] == "interrupted"
    assert events[-1][2]["message_id"] == MESSAGE_ID
    await sweeper.lost([MESSAGE_ID])  # already ended: not twice
    assert [e[1] for e in await read(sweeper, generation.id, seen)][-2:] == ["error", "done"]
    await sweeper.close()

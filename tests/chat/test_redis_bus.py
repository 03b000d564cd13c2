"""The Redis generation bus against a real Redis: batched writes, resume from any event on
another "replica", live following through one hub, ownership, the conversation lock, stop
requests and a dead owner's terminal events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from chatgate.chat.answers import OrphanSweeper
from chatgate.chat.bus import STOP_KIND
from chatgate.chat.generations import Generation, GenerationManager
from chatgate.chat.redis_bus import RedisBus
from chatgate.db.health import DatabaseHealth
from chatgate.db.models import Conversation, Message, User
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.errors import APIError
from tests.helpers import parse_sse

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest_asyncio.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    name = f"test-bus-{uuid.uuid4().hex[:10]}"
    yield name
    keys = [key async for key in redis.scan_iter(match=f"{name}:*")]
    if keys:
        await redis.delete(*keys)


def make_bus(redis: Redis, prefix: str) -> RedisBus:
    return RedisBus(redis, prefix, lease_seconds=4, retain_seconds=30)


class Fleet:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def publish(self, kind: str, **data: Any) -> None:
        self.sent.append((kind, data))


async def read(stream: AsyncIterator[bytes]) -> list[tuple[int, str, Any]]:
    events = []
    async for block in stream:
        events += [(e.id, e.event, e.data) for e in parse_sse(block.decode()) if e.id]
    return events


async def until_written(generation: Generation, events: int) -> None:
    assert generation.sink is not None
    async with asyncio.timeout(10):
        while generation.sink.last_written < events:
            await asyncio.sleep(0.005)


async def started(bus: RedisBus, user: int = 1) -> Generation:
    generation = Generation(uuid.uuid4().hex, user, f"conv-{uuid.uuid4().hex[:6]}")
    assert await bus.claim(generation)
    bus.attach(generation, message_id=abs(hash(generation.id)) % 10**9)
    return generation


async def test_events_are_written_per_batch_and_resume_anywhere(redis: Redis, prefix: str) -> None:
    owner, other = make_bus(redis, prefix), make_bus(redis, prefix)
    generation = await started(owner)
    for batch in range(4):  # four engine reads of five chunks each
        for n in range(5):
            generation.publish(None, {"batch": batch, "n": n})
        await asyncio.sleep(0)  # the next engine read
    generation.publish("done", {"status": "complete"})
    generation.finish()
    assert generation.sink is not None
    await generation.sink.task
    assert generation.sink.writes <= 5  # never one per token
    assert await redis.xlen(f"{prefix}:gen:{generation.id}") == generation.sink.writes
    remote = await other.find(generation.id, user_id=1)
    assert remote is not None
    for after in range(0, 22):
        events = await read(remote.stream(after))
        assert [e[0] for e in events] == list(range(after + 1, 22))
    assert 0 < await redis.ttl(f"{prefix}:gen:{generation.id}") <= 30
    assert await other.find(generation.id, user_id=2) is None
    await owner.close()
    await other.close()


async def test_followers_on_another_replica_get_every_event_live(redis: Redis, prefix: str) -> None:
    owner, other = make_bus(redis, prefix), make_bus(redis, prefix)
    generation = await started(owner)
    generation.publish("conversation", {})
    remote = await other.find(generation.id, user_id=1)
    assert remote is not None
    readers = [asyncio.create_task(read(remote.stream(after))) for after in (0, 1, 0)]
    for n in range(30):
        generation.publish(None, {"n": n})
        if n % 3 == 0:
            await asyncio.sleep(0.005)
    generation.publish("done", {})
    generation.finish()
    results = await asyncio.gather(*readers)
    assert [e[0] for e in results[0]] == list(range(1, 33))
    assert [e[0] for e in results[1]] == list(range(2, 33))
    assert results[2] == results[0]
    await owner.close()
    await other.close()


async def test_one_generation_per_conversation_across_replicas(redis: Redis, prefix: str) -> None:
    first, second = make_bus(redis, prefix), make_bus(redis, prefix)
    g1, g2, g3 = (Generation(f"g{n}", 1, "c1") for n in (1, 2, 3))
    assert await first.claim(g1)
    assert not await second.claim(g2)
    assert await second.find("g2", 1) is None  # refused: never known to the fleet
    await second.release("c1", "g2")  # not the holder: nothing happens
    assert not await second.claim(g3)
    await first.renew("c1", "g1")
    assert 3000 < await redis.pttl(f"{prefix}:genconv:c1") <= 4000
    await first.release("c1", "g1")
    assert await second.claim(g2)
    manager = GenerationManager(60, 60, bus=first)
    with pytest.raises(APIError) as refused:
        await manager.claim(g3)
    assert refused.value.status_code == 409


async def test_stop_from_another_replica_reaches_the_owner(redis: Redis, prefix: str) -> None:
    owner_bus, other_bus = make_bus(redis, prefix), make_bus(redis, prefix)
    fleet = Fleet()
    other_bus.fleet = fleet  # type: ignore[assignment]
    owner = GenerationManager(60, 60, bus=owner_bus)
    other = GenerationManager(60, 60, bus=other_bus)
    generation = await started(owner_bus)
    owner.launch(generation, asyncio.sleep(3600))
    assert await other.stop(generation.id, user_id=1) is True
    assert fleet.sent == [(STOP_KIND, {"generation": generation.id})]
    with pytest.raises(APIError):
        await other.stop(generation.id, user_id=2)
    owner._stop_local({"kind": STOP_KIND, "generation": generation.id})  # as the fleet would
    await asyncio.sleep(0)
    assert generation.task is not None and generation.task.cancelled()
    generation.finish()
    assert generation.sink is not None
    await generation.sink.task
    assert await other.stop(generation.id, user_id=1) is False  # finished: nothing to stop
    await owner_bus.close()
    await other_bus.close()


async def test_a_dead_owners_readers_get_a_terminal_event(redis: Redis, prefix: str) -> None:
    owner, sweeper = make_bus(redis, prefix), make_bus(redis, prefix)
    generation = Generation(uuid.uuid4().hex, 1, "conv-lost")
    assert await owner.claim(generation)
    owner.attach(generation, message_id=4242)
    for n in range(5):
        generation.publish(None, {"n": n})
    assert generation.sink is not None
    await until_written(generation, 5)  # the owner then "dies"
    generation.sink.task.cancel()
    remote = await sweeper.find(generation.id, user_id=1)
    assert remote is not None
    reader = asyncio.create_task(read(remote.stream(3)))
    await sweeper.lost([4242, 999999])  # an answer with no generation is skipped
    events = await reader
    names = [(e[0], e[1]) for e in events]
    assert names == [(4, "message"), (5, "message"), (6, "error"), (7, "done")]
    assert events[2][2]["error"]["code"] == "generation_lost"
    assert events[3][2] == {
        "status": "interrupted",
        "finish_reason": None,
        "message_id": 4242,
        "conversation_id": "conv-lost",
    }
    await sweeper.lost([4242])  # already ended: not twice
    assert [e[0] for e in await read(remote.stream(0))] == list(range(1, 8))
    await owner.close()
    await sweeper.close()


async def test_a_generation_followed_elsewhere_is_not_stopped_as_orphaned(
    redis: Redis, prefix: str
) -> None:
    owner_bus, other_bus = make_bus(redis, prefix), make_bus(redis, prefix)
    owner = GenerationManager(orphan_seconds=60, retain_seconds=60, bus=owner_bus)
    watched, unwatched = await started(owner_bus), await started(owner_bus)
    owner.launch(watched, asyncio.sleep(3600))
    owner.launch(unwatched, asyncio.sleep(3600))
    watched.publish("conversation", {})
    remote = await other_bus.find(watched.id, user_id=1)
    assert remote is not None
    stream = remote.stream(0)
    assert b"id: 1" in await anext(stream)  # following on the other replica
    later = watched.unsubscribed_at + 61
    followed = await owner_bus.followed(owner.unwatched(later), within=60)
    assert followed == {watched.id}
    owner.sweep(later, followed)
    await asyncio.sleep(0)
    assert unwatched.task is not None and unwatched.task.cancelled()
    assert watched.task is not None and not watched.task.done()
    watched.task.cancel()
    await stream.aclose()
    for generation in (watched, unwatched):
        generation.finish()
    await owner_bus.close()
    await other_bus.close()


async def test_the_orphan_sweeper_ends_a_dead_owners_generation(
    redis: Redis, prefix: str, database_url: str
) -> None:
    """End to end inside one process: an answer whose lease ran out is ended in the
    database and its generation gets the terminal events on the sweeping gateway."""
    engine = make_engine(database_url)
    sessionmaker = make_sessionmaker(engine)
    async with sessionmaker() as db:
        user = User(username=f"u{uuid.uuid4().hex[:6]}", password_hash="x", role="user")
        db.add(user)
        await db.flush()
        conversation = Conversation(user_id=user.id, title="t")
        db.add(conversation)
        await db.flush()
        stale = datetime.now(UTC) - timedelta(seconds=60)
        message = Message(
            conversation_id=conversation.id, role="assistant", content="partial",
            status="pending", model="m", checkpoint_at=stale,
        )  # fmt: skip
        db.add(message)
        await db.commit()
        message_id, user_id, conversation_id = message.id, user.id, conversation.id
    owner, survivor = make_bus(redis, prefix), make_bus(redis, prefix)
    generation = Generation(uuid.uuid4().hex, user_id, conversation_id)
    assert await owner.claim(generation)
    owner.attach(generation, message_id)
    generation.publish(None, {"n": 0})
    await until_written(generation, 1)
    assert generation.sink is not None
    generation.sink.task.cancel()  # the owner dies
    sweeper = OrphanSweeper(sessionmaker, DatabaseHealth(), lease_seconds=4)
    sweeper.on_ended = survivor.lost
    assert await sweeper.sweep() == 1
    remote = await survivor.find(generation.id, user_id)
    assert remote is not None
    events = await read(remote.stream(0))
    assert [e[1] for e in events] == ["message", "error", "done"]
    async with sessionmaker() as db:
        saved = await db.get(Message, message_id)
        assert saved is not None and saved.status == "interrupted"
        assert saved.content == "partial"
    await engine.dispose()
    await owner.close()
    await survivor.close()

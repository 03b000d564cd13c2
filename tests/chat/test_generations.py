"""GenerationManager bookkeeping: replay, orphan stop, retention, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from chatgate.chat.generations import Generation, GenerationManager, encode_event
from chatgate.errors import APIError
from tests.helpers import parse_sse


async def collect(generation: Generation, after: int) -> list[int]:
    ids = []
    async for block in generation.stream(after):
        ids += [e.id for e in parse_sse(block.decode()) if e.id is not None]
    return ids


def test_encode_event_shape() -> None:
    assert encode_event(3, "done", {"a": 1}) == b'id: 3\nevent: done\ndata: {"a":1}\n\n'
    assert encode_event(1, None, b"{}") == b"id: 1\ndata: {}\n\n"


async def test_stream_replays_after_cursor_then_follows_live() -> None:
    generation = Generation("g1", 1, "c1")
    for n in range(3):
        generation.publish(None, {"n": n})
    reader = asyncio.create_task(collect(generation, 1))
    await asyncio.sleep(0.01)
    generation.publish("done", {})
    generation.finish()
    assert await reader == [2, 3, 4]
    assert generation.subscribers == 0


async def test_manager_scopes_generations_to_their_owner() -> None:
    manager = GenerationManager(orphan_seconds=60, retain_seconds=60)
    generation = Generation("g2", user_id=7, conversation_id="c")
    manager.launch(generation, asyncio.sleep(0))
    assert manager.get("g2", 7) is generation
    with pytest.raises(APIError) as missing:
        manager.get("g2", 8)
    assert missing.value.status_code == 404
    await generation.task  # type: ignore[misc]


async def test_orphaned_generation_is_stopped_and_finished_ones_expire() -> None:
    manager = GenerationManager(orphan_seconds=10, retain_seconds=30)
    orphan = Generation("orphan", 1, "c1")
    manager.launch(orphan, asyncio.sleep(3600))
    watched = Generation("watched", 1, "c2")
    manager.launch(watched, asyncio.sleep(3600))
    watched.subscribers = 1
    now = orphan.unsubscribed_at + 11
    manager.sweep(now)
    await asyncio.sleep(0)
    assert orphan.task is not None and orphan.task.cancelled()
    assert watched.task is not None and not watched.task.done()
    assert manager.running_in("c2") is watched

    watched.finish()
    assert watched.finished_at is not None
    manager.sweep(watched.finished_at + 31)
    with pytest.raises(APIError):
        manager.get("watched", 1)
    watched.task.cancel()


async def test_shutdown_waits_then_cancels_stragglers() -> None:
    manager = GenerationManager(orphan_seconds=60, retain_seconds=60)
    manager.start_sweeper()
    quick = Generation("quick", 1, "a")
    slow = Generation("slow", 1, "b")
    manager.launch(quick, asyncio.sleep(0.01))
    manager.launch(slow, asyncio.sleep(3600))
    await manager.shutdown(drain_seconds=0.2)
    assert quick.task is not None and quick.task.done() and not quick.task.cancelled()
    assert slow.task is not None and slow.task.cancelled()

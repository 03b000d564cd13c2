"""The fleet channel: a change published by one gateway is applied by the others (not by
itself), survives a bad message, and a gateway's own changes reach its publishers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from redis.asyncio import Redis

from chatgate.auth import cache
from chatgate.fleet import FleetEvents, apply_identity


async def test_events_reach_the_other_gateways_only(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    seen: dict[str, list[dict[str, Any]]] = {"one": [], "two": []}
    redis = Redis.from_url(redis_url)
    one = FleetEvents(redis, prefix, {"ping": seen["one"].append})
    two = FleetEvents(redis, prefix, {"ping": seen["two"].append})
    one.start()
    two.start()
    try:
        await asyncio.wait_for(asyncio.gather(one.subscribed.wait(), two.subscribed.wait()), 10)
        await redis.publish(one.channel, b"not json")  # ignored, the listener lives on
        one.publish("ping", n=1)
        async with asyncio.timeout(10):
            while not seen["two"]:
                await asyncio.sleep(0.01)
        assert [e["n"] for e in seen["two"]] == [1]
        assert seen["one"] == [], "a gateway does not apply its own change twice"
        assert two.applied == 1
    finally:
        await one.close()
        await two.close()
        await redis.aclose()


async def test_identity_changes_are_published_and_applied(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(redis_url)
    sent: list[dict[str, Any]] = []
    listener = FleetEvents(redis, prefix, {"identity": sent.append})
    sender = FleetEvents(redis, prefix, {})
    listener.start()
    sender.start()
    try:
        await asyncio.wait_for(listener.subscribed.wait(), 10)
        cache.invalidate_key(41)  # what revoking a key through this gateway does
        async with asyncio.timeout(10):
            while not sent:
                await asyncio.sleep(0.01)
        assert sent[0]["change"] == "key:41"
    finally:
        await listener.close()
        await sender.close()
        await redis.aclose()
    assert cache._PUBLISHERS == []  # noqa: SLF001 - closed apps stop publishing


def test_identity_events_drop_the_right_entries() -> None:
    from datetime import UTC, datetime

    from chatgate.auth.identity import Identity

    local = cache.IdentityCache(ttl_seconds=600)
    now = datetime.now(UTC)
    for user_id, key_id in ((1, 10), (2, 20)):
        identity = Identity(user_id=user_id, username=f"u{user_id}", role="user", api_key_id=key_id)
        local.put(f"hash-{key_id}", identity, None)
    apply_identity({"change": "key:10"})
    assert local.get("hash-10", now) is None and local.get("hash-20", now) is not None
    apply_identity({"change": "user:2"})
    assert local.get("hash-20", now) is None

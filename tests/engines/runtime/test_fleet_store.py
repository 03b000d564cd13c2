"""The fleet's shared engine state, in Redis and in files: only the lease holder writes the
state, one switch holds the slot at a time, drain reports per gateway."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from chatgate.engines.runtime.fleet_store import FleetStore, store_for
from chatgate.engines.runtime.leader import LeaderLease, lease_for


@dataclass
class Pair:
    """Two gateways of one fleet: ``leader`` holds the lease, ``other`` does not."""

    leader: FleetStore
    other: FleetStore


@pytest_asyncio.fixture(params=["redis", "files"])
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    prefix = f"store-{uuid.uuid4().hex[:8]}"
    leases: list[LeaderLease] = [lease_for(url, prefix, tmp_path / "run", 30.0) for _ in "ab"]
    assert leases[0].tick() and not leases[1].tick()
    redis = Redis.from_url(url) if url else None
    try:
        yield Pair(*(store_for(redis, prefix, tmp_path / "run", lease) for lease in leases))
    finally:
        for lease in leases:
            lease.stop()
        if redis is not None:
            for key in await redis.keys(f"{prefix}:*"):
                await redis.delete(key)
            await redis.aclose()


async def test_only_the_lease_holder_writes_the_state(stores: Pair) -> None:
    assert await stores.leader.write_state({"active": "alpha"})
    assert not await stores.other.write_state({"active": "beta"})
    state, request = await stores.other.load()
    assert state == {"active": "alpha"} and request is None


async def test_one_switch_holds_the_slot_until_it_is_released(stores: Pair) -> None:
    assert await stores.other.claim({"id": "s1", "target": "beta"})
    assert not await stores.leader.claim({"id": "s2", "target": "alpha"})
    await stores.leader.release("s2")  # not the switch in the slot: nothing happens
    assert (await stores.leader.load())[1] == {"id": "s1", "target": "beta"}
    await stores.leader.release("s1")
    assert (await stores.leader.load())[1] is None
    assert await stores.leader.claim({"id": "s2", "target": "alpha"})


async def test_drain_reports_per_gateway(stores: Pair) -> None:
    await stores.other.report("s1", "gw-b", 3, 1)
    await stores.other.report("s1", "gw-b", 2, 2)
    await stores.leader.report("s1", "gw-a", 0, 1)
    await stores.leader.report("s0", "gw-a", 9, 1)
    assert await stores.leader.reports("s1") == {"gw-b": (2, 2), "gw-a": (0, 1)}

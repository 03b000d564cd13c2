"""The engine leader lease: one holder at a time, renewed, taken over once it lapses.

The keeper's decisions run against a lease table whose expiry follows an injected clock
(the same contract as Redis' ``SET NX PX`` and the Lua scripts); the Redis and file
backends are then checked for that contract on the real thing.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from redis import Redis

from chatgate.engines.runtime.coordinator import REPORT_STALE_SECONDS, DrainReports
from chatgate.engines.runtime.leader import FileLeaseBackend, LeaderLease, RedisLeaseBackend
from tests.helpers import FakeClock


class ClockedTable:
    """One lease key with a TTL on an injected clock: the semantics of the Redis backend."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.holder: str | None = None
        self.expires = 0.0
        self.down = False

    def _live(self) -> str | None:
        if self.down:
            raise ConnectionError("redis is away")
        if self.holder is not None and self.clock() >= self.expires:
            self.holder = None
        return self.holder


class ClockedBackend:
    def __init__(self, table: ClockedTable) -> None:
        self.table = table

    def acquire(self, token: str, ttl_ms: int) -> bool:
        if self.table._live() is not None:
            return False
        self.table.holder, self.table.expires = token, self.table.clock() + ttl_ms / 1000
        return True

    def renew(self, token: str, ttl_ms: int) -> bool:
        holder = self.table._live()
        if holder not in (None, token):
            return False
        self.table.holder, self.table.expires = token, self.table.clock() + ttl_ms / 1000
        return True

    def release(self, token: str) -> None:
        if self.table._live() == token:
            self.table.holder = None

    def close(self) -> None:
        pass


def pair(clock: FakeClock, ttl: float = 10.0) -> tuple[ClockedTable, LeaderLease, LeaderLease]:
    table = ClockedTable(clock)
    one = LeaderLease(ClockedBackend(table), ttl, clock=clock)
    two = LeaderLease(ClockedBackend(table), ttl, clock=clock)
    return table, one, two


def test_one_holder_and_renewals_keep_it() -> None:
    clock = FakeClock()
    _table, one, two = pair(clock)
    assert one.tick() and not two.tick()
    for _ in range(20):  # renewed every interval, long past the first lease
        clock.now += one.interval
        assert one.tick() and not two.tick()
    assert one.held and one.confirmed and not two.held


def test_a_dead_holder_is_replaced_once_its_lease_lapsed() -> None:
    clock = FakeClock()
    _table, one, two = pair(clock, ttl=10.0)
    changes: list[bool] = []
    two.add_listener(changes.append)
    assert one.tick()
    clock.now += 9.9  # one stopped renewing (killed): not yet
    assert not two.tick()
    clock.now += 0.2
    assert two.tick() and changes == [True]


def test_a_holder_that_lost_its_lease_steps_down_on_its_next_renewal() -> None:
    clock = FakeClock()
    table, one, two = pair(clock, ttl=10.0)
    lost: list[bool] = []
    assert one.tick()
    one.add_listener(lost.append)
    table.down = True  # one cannot reach the lease for longer than the lease...
    clock.now += 11.0
    assert one.tick(), "unreachable: it keeps its engine"
    assert not one.confirmed, "but no renewal confirmed it within the lease"
    table.down = False  # ...and meanwhile (a partition) the other took it
    assert two.tick()
    clock.now += 0.5
    assert not one.tick() and lost == [False]


def test_an_outage_shorter_than_the_lease_changes_nothing() -> None:
    clock = FakeClock()
    table, one, two = pair(clock, ttl=10.0)
    assert one.tick()
    table.down = True
    clock.now += 4.0
    assert one.tick() and one.confirmed
    table.down = False
    clock.now += 4.0
    assert one.tick() and not two.tick()


def test_a_released_lease_is_free_at_once() -> None:
    clock = FakeClock()
    _table, one, two = pair(clock)
    assert one.tick()
    one.stop(release=True)
    assert not one.held and two.tick()


def test_the_keeper_ticks_at_most_every_second_and_a_third_of_the_lease() -> None:
    clock = FakeClock()
    table = ClockedTable(clock)
    assert LeaderLease(ClockedBackend(table), 30.0, clock=clock).interval == 1.0
    assert LeaderLease(ClockedBackend(table), 1.5, clock=clock).interval == 0.5


def test_redis_backend_contract(redis_url: str) -> None:
    key = f"test-{uuid.uuid4().hex[:8]}:engine:leader"
    one, two = RedisLeaseBackend(redis_url, key), RedisLeaseBackend(redis_url, key)
    probe = Redis.from_url(redis_url)
    try:
        assert one.acquire("a", 60_000) and not two.acquire("b", 60_000)
        assert not two.renew("b", 60_000), "compare-and-extend: not the holder"
        assert one.renew("a", 5_000) and 0 < int(probe.pttl(key)) <= 5_000
        two.release("b")
        assert probe.get(key) == b"a", "compare-and-delete: not the holder's"
        probe.delete(key)  # the lease lapsed while "a" could not renew
        assert one.renew("a", 60_000) and probe.get(key) == b"a", "a free lease is retaken"
        one.release("a")
        assert probe.get(key) is None and two.acquire("b", 60_000)
    finally:
        probe.delete(key)
        probe.close()
        one.close()
        two.close()


def test_file_backend_is_one_holder_per_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "fleet" / "leader.lock"
    one, two = FileLeaseBackend(path), FileLeaseBackend(path)
    try:
        assert one.acquire("a", 1) and not two.acquire("b", 1)
        assert one.renew("a", 1) and not two.renew("b", 1)
        one.release("a")  # or the process died: the kernel drops the lock
        assert two.acquire("b", 1) and "b" in path.read_text()
    finally:
        one.close()
        two.close()


def test_drain_reports_ignore_gateways_that_went_quiet(clock: FakeClock) -> None:
    reports = DrainReports("leader", clock)
    assert reports.total("s1", {"leader": (9, 1), "a": (2, 1), "b": (1, 1)}) == 3
    clock.now += REPORT_STALE_SECONDS - 0.1
    assert reports.total("s1", {"a": (2, 2), "b": (1, 1)}) == 3
    clock.now += 0.2  # b has not reported since: it is gone
    assert reports.total("s1", {"a": (1, 3), "b": (1, 1)}) == 1


@pytest.mark.parametrize("ttl", [1.0, 10.0])
def test_stop_without_release_keeps_the_lease_until_it_lapses(ttl: float) -> None:
    clock = FakeClock()
    _table, one, two = pair(clock, ttl=ttl)
    assert one.tick()
    one.stop(release=False)
    assert not two.tick()
    clock.now += ttl
    assert two.tick()

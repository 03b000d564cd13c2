"""The shared slot ledger against the real Redis: one fleet-wide capacity and fair queue for
gateways in one process (each ledger is one gateway), leases of a dead gateway, fallback."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from chatgate.engines.admission.pool import EnginePools, Ticket
from chatgate.engines.admission.queue import Grant, QueueTimeout
from chatgate.engines.admission.shared import SharedLedger
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.observability.metrics import Metrics

pytestmark = pytest.mark.timeout(60)

MODEL = "m"


async def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll (bounded) for something another task or gateway does."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


class Fleet:
    """Gateways (ledgers) sharing one Redis under a key prefix of their own."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"test-{uuid.uuid4().hex[:10]}"
        self.ledgers: list[SharedLedger] = []
        self.pools: list[EnginePools] = []
        self.redis = Redis.from_url(url)

    def ledger(self, lease_seconds: float = 10.0) -> SharedLedger:
        ledger = SharedLedger(self.url, self.prefix, lease_seconds=lease_seconds)
        self.ledgers.append(ledger)
        return ledger

    def pool(self, slots: int, metrics: Metrics | None = None) -> tuple[ModelEntry, EnginePools]:
        registry = ModelRegistry(MODEL)
        entry = ModelEntry(id=MODEL, name="M", endpoints=[Endpoint("e", "http://e/v1", MODEL)])
        entry.endpoints[0].capacity = slots
        registry.add(entry)
        pools = EnginePools(
            registry, metrics, max_waiting=16, timeout=20.0, redis_url=self.url,
            redis_prefix=self.prefix,
        )  # fmt: skip
        self.pools.append(pools)
        return entry, pools

    async def key(self, suffix: str) -> Any:
        return f"{self.prefix}-adm2:{{{MODEL}}}:{suffix}"

    async def busy(self) -> int:
        return int(await self.redis.get(await self.key("busy")) or 0)

    async def waiting(self) -> int:
        return sum([int(await self.redis.zcard(await self.key(f"q:{r}"))) for r in range(3)])

    async def settled(self, busy: int) -> None:
        """Wait (bounded) until the releases sent in the background reached Redis."""
        for _ in range(1000):
            if await self.busy() == busy:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"busy is {await self.busy()}, not {busy}")

    async def close(self) -> None:
        for pools in self.pools:
            await pools.close()
        for ledger in self.ledgers:
            await ledger.close()
        keys = [k async for k in self.redis.scan_iter(match=f"{self.prefix}-*")]
        if keys:
            await self.redis.delete(*keys)
        await self.redis.aclose()


@pytest_asyncio.fixture
async def fleet(redis_url: str) -> AsyncIterator[Fleet]:
    f = Fleet(redis_url)
    yield f
    await f.close()


def acquire(ledger: SharedLedger, tenant: str, **kwargs: Any) -> asyncio.Task[Grant | None]:
    return asyncio.create_task(ledger.acquire(MODEL, 2, tenant, **kwargs))


async def test_capacity_is_shared_by_the_gateways(fleet: Fleet) -> None:
    one, two = fleet.ledger(), fleet.ledger()
    held = [await acquire(one, "user:a"), await acquire(one, "user:a")]
    assert all(g is not None and g.waited == 0 for g in held)
    late = acquire(two, "user:b")
    await until(lambda: two.waiting(MODEL) == 1)
    assert await fleet.busy() == 2 and await fleet.waiting() == 1
    grant = held[0]
    assert grant is not None
    one.release(grant)
    granted = await asyncio.wait_for(late, 10)
    assert granted is not None and granted.tenant == "user:b" and granted.waited > 0
    assert await fleet.busy() == 2 and await fleet.waiting() == 0
    two.release(granted)
    assert held[1] is not None
    one.release(held[1])
    await fleet.settled(0)
    with pytest.raises(ValueError, match="not held"):
        one.release(held[1])


async def test_a_newcomer_on_another_gateway_gets_the_next_slot(fleet: Fleet) -> None:
    """Tenant A floods through gateway 1; B's request through gateway 2 is granted the next
    freed slot, ahead of A's queued ones, and hears its place in the fleet's queue."""
    entry1, pools1 = fleet.pool(slots=2)
    entry2, pools2 = fleet.pool(slots=2)
    order: list[str] = []
    grants: dict[str, Grant] = {}
    positions: list[int] = []

    async def ask(pools: EnginePools, entry: ModelEntry, tenant: str, label: str) -> None:
        track = positions.append if label == "b" else None
        grants[label] = await pools.acquire(entry, Ticket(tenant, on_position=track))
        order.append(label)

    flood = [asyncio.create_task(ask(pools1, entry1, "user:a", f"a{i}")) for i in range(6)]
    await until(lambda: len(order) == 2)
    await until(lambda: pools1._ledger is not None and pools1._ledger.waiting(MODEL) == 4)  # noqa: SLF001
    b = asyncio.create_task(ask(pools2, entry2, "user:b", "b"))
    await until(lambda: bool(positions))
    assert positions == [0]  # A's four queue behind it: B's start tag is the smallest
    first, second = order
    pools1.release(MODEL, grants[first])
    await asyncio.wait_for(b, 10)
    assert order[2] == "b", order
    pools2.release(MODEL, grants["b"])
    pools1.release(MODEL, grants[second])
    released = {first, second, "b"}
    while len(released) < 7:
        await until(lambda: any(label not in released for label in order))
        for label in [label for label in order if label not in released]:
            pools1.release(MODEL, grants[label])
            released.add(label)
    await asyncio.gather(*flood)
    assert sorted(order) == sorted(grants) and len(order) == 7
    await fleet.settled(0)
    assert pools1.snapshots()[0].busy == 0


async def test_interactive_waiters_go_first_fleet_wide(fleet: Fleet) -> None:
    one, two = fleet.ledger(), fleet.ledger()
    held = [await acquire(one, "user:a"), await acquire(one, "user:a")]
    api = acquire(one, "user:c", priority="api")
    await until(lambda: one.waiting(MODEL) == 1)
    chat = acquire(two, "user:d", priority="interactive")
    await until(lambda: two.waiting(MODEL) == 1)
    first = held[0]
    assert first is not None
    one.release(first)
    granted = await asyncio.wait_for(chat, 10)
    assert granted is not None and granted.priority == "interactive" and not api.done()
    two.release(granted)
    assert (await asyncio.wait_for(api, 10)) is not None


async def test_a_dead_gateways_slots_come_back_within_its_lease(fleet: Fleet) -> None:
    dead, live = fleet.ledger(lease_seconds=1.0), fleet.ledger()
    assert await acquire(dead, "user:a") is not None
    assert await acquire(dead, "user:a") is not None
    for task in dead._loops:  # noqa: SLF001  # killed: no heartbeat, no leave
        task.cancel()
    waiter = acquire(live, "user:b")
    await until(lambda: live.waiting(MODEL) == 1)
    started = asyncio.get_running_loop().time()
    granted = await asyncio.wait_for(waiter, 15)  # lease 1 s + the live one's 1 s beat
    assert granted is not None
    assert asyncio.get_running_loop().time() - started < 10
    assert await fleet.busy() == 1
    assert not await fleet.redis.exists(await fleet.key(f"held:{dead.gateway}"))
    dead._loops.clear()  # noqa: SLF001


async def test_a_live_gateway_keeps_its_slots_past_its_lease(fleet: Fleet) -> None:
    """Its heartbeat renews the lease: another gateway's start or heartbeat never frees them."""
    holder = fleet.ledger(lease_seconds=0.9)
    grant = await acquire(holder, "user:a")
    await asyncio.sleep(0)  # loops started
    other = fleet.ledger()
    await acquire(other, "user:b")
    await asyncio.sleep(2.5)  # nearly three leases, renewed every 0.3 s
    assert await fleet.busy() == 2
    assert grant is not None and holder.owns(grant)


async def test_a_timed_out_waiter_leaves_the_fleets_queue(fleet: Fleet) -> None:
    one = fleet.ledger()
    held = [await acquire(one, "user:a"), await acquire(one, "user:a")]
    with pytest.raises(QueueTimeout):
        await acquire(one, "user:b", timeout=0.2)
    assert await fleet.waiting() == 0 and one.waiting(MODEL) == 0
    for grant in held:
        assert grant is not None
        one.release(grant)
    await fleet.settled(0)


async def test_a_cancelled_waiter_does_not_leak_its_slot(fleet: Fleet) -> None:
    one, two = fleet.ledger(), fleet.ledger()
    held = [await acquire(one, "user:a"), await acquire(one, "user:a")]
    gone = acquire(two, "user:b")
    await until(lambda: two.waiting(MODEL) == 1)
    gone.cancel()
    nxt = acquire(two, "user:c")
    await until(lambda: two.waiting(MODEL) == 1 and gone.done())
    first = held[0]
    assert first is not None
    one.release(first)
    granted = await asyncio.wait_for(nxt, 10)
    assert granted is not None and granted.tenant == "user:c"
    assert await fleet.busy() == 2 and await fleet.waiting() == 0


async def test_a_pools_timeout_is_503_engine_busy(fleet: Fleet) -> None:
    entry, pools = fleet.pool(slots=1)
    pools._timeout = 0.2  # noqa: SLF001
    grant = await pools.acquire(entry, Ticket("user:a"))
    with pytest.raises(APIError) as info:
        await pools.acquire(entry, Ticket("user:b"))
    assert (info.value.status_code, info.value.code) == (503, "engine_busy")
    assert info.value.headers is not None and int(info.value.headers["Retry-After"]) >= 1
    pools.release(MODEL, grant)


async def test_without_redis_each_gateway_admits_alone(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    registry = ModelRegistry(MODEL)
    entry = ModelEntry(id=MODEL, name="M", endpoints=[Endpoint("e", "http://e/v1", MODEL)])
    entry.endpoints[0].capacity = 1
    registry.add(entry)
    pools = EnginePools(registry, metrics, timeout=5.0, redis_url="redis://127.0.0.1:9/0")
    try:
        first = await pools.acquire(entry, Ticket("user:a"))
        second = asyncio.create_task(pools.acquire(entry, Ticket("user:b")))
        await until(lambda: pools.queue(entry).waiting == 1)
        pools.release(MODEL, first)
        pools.release(MODEL, await asyncio.wait_for(second, 5))
        assert metrics.registry.get_sample_value("chatgate_admission_fallback") == 1
        errors = [r for r in caplog.records if "admission falls back" in r.getMessage()]
        assert len(errors) == 1  # one line per outage
    finally:
        await pools.close()


async def test_scripts_are_loaded_again_after_a_redis_restart(fleet: Fleet) -> None:
    """NOSCRIPT (Redis restarted or flushed): loaded again, the call retried once. Shown with
    a stale SHA rather than SCRIPT FLUSH, which would touch every other user of this Redis."""
    one = fleet.ledger()
    one._redis._sha["admit"] = "0" * 40  # noqa: SLF001
    grant = await acquire(one, "user:a")
    assert grant is not None and await fleet.busy() == 1


async def test_a_request_cancelled_while_admitted_frees_its_slot(fleet: Fleet) -> None:
    """The client left while the admission script ran: the slot it may have got goes back."""
    one = fleet.ledger()
    task = acquire(one, "user:a")
    await asyncio.sleep(0)  # submitted, not answered
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: not one._to_release)  # noqa: SLF001
    await fleet.settled(0)
    assert await acquire(one, "user:b") is not None


async def test_a_grant_that_overtakes_the_admission_reply_is_not_lost(fleet: Fleet) -> None:
    """The grant (BLPOP connection) may arrive before the reply that queued the request
    (its own connection): the waiter still gets it, and nothing leaks."""
    one, two = fleet.ledger(), fleet.ledger()
    held = [await acquire(one, "user:a"), await acquire(one, "user:a")]
    submit = two._redis.submit  # noqa: SLF001

    def reply_after_the_grant(script: str, model: str, *args: Any) -> asyncio.Future[Any]:
        sent = submit(script, model, *args)
        if script != "admit":
            return sent

        async def late() -> Any:
            reply = await sent
            assert int(reply[0]) == 0  # queued
            first = held[0]
            assert first is not None
            one.release(first)
            await until(
                lambda: (
                    not two._pending
                    or all(  # noqa: SLF001
                        p.future.done()
                        for p in two._pending.values()  # noqa: SLF001
                    )
                )
            )
            return reply

        return asyncio.ensure_future(late())

    two._redis.submit = reply_after_the_grant  # type: ignore[method-assign]  # noqa: SLF001
    granted = await asyncio.wait_for(acquire(two, "user:b", timeout=5.0), 10)
    assert granted is not None and granted.tenant == "user:b"
    assert await fleet.busy() == 2


async def test_three_gateways_under_churn_never_exceed_or_leak_slots(fleet: Fleet) -> None:
    """300 requests over three gateways, mixed classes, some clients leaving while queued or
    while admitted: the fleet never holds more than its slots, and ends with none held."""
    rng = random.Random(17)
    ledgers = [fleet.ledger() for _ in range(3)]
    inside = peak = 0

    async def request(i: int) -> None:
        nonlocal inside, peak
        ledger = ledgers[i % 3]
        priority = rng.choice(["interactive", "api", "batch"])
        grant = await ledger.acquire(MODEL, 4, f"user:{i % 5}", priority=priority, timeout=30)
        assert grant is not None
        inside += 1
        peak = max(peak, inside)
        try:
            await asyncio.sleep(rng.random() * 0.02)
        finally:
            inside -= 1
            ledger.release(grant)

    tasks = [asyncio.create_task(request(i)) for i in range(300)]
    await asyncio.sleep(0.1)
    for task in rng.sample(tasks, 30):
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert not [r for r in results if r is not None and not isinstance(r, asyncio.CancelledError)]
    assert peak <= 4
    await fleet.settled(0)
    assert await fleet.waiting() == 0


async def test_tags_of_idle_users_are_forgotten_while_nobody_waits(fleet: Fleet) -> None:
    """Users admitted at once leave a finish tag; the heartbeat drops those holding nothing
    while no one waits, so the ledger does not grow with every user ever seen."""
    one = fleet.ledger(lease_seconds=0.9)
    for user in range(5):
        grant = await acquire(one, f"user:{user}")
        assert grant is not None
        if user:
            one.release(grant)
    await fleet.settled(1)
    tags = await fleet.key("fin:1")
    for _ in range(300):
        if await fleet.redis.hkeys(tags) == [b"user:0"]:  # it still holds its slot
            return
        await asyncio.sleep(0.01)
    raise AssertionError(await fleet.redis.hkeys(tags))


# Requests for n answers hold n of the fleet's slots.


async def test_a_request_for_k_answers_holds_k_slots_fleet_wide(fleet: Fleet) -> None:
    """Its slots count fleet-wide; a waiter needing two of them, granted on another
    gateway, hears how many; a 1-slot request behind it does not pass it meanwhile."""
    one, two = fleet.ledger(), fleet.ledger()
    three = await one.acquire(MODEL, 4, "user:a", slots=3)
    assert three is not None and three.slots == 3 and one.held(MODEL) == 3
    assert await fleet.busy() == 3
    assert await fleet.redis.hget(await fleet.key("inflight"), "user:a") == b"3"
    pair = asyncio.create_task(two.acquire(MODEL, 4, "user:b", slots=2))
    await until(lambda: two.waiting(MODEL) == 1)
    single = asyncio.create_task(two.acquire(MODEL, 4, "user:c"))
    await until(lambda: two.waiting(MODEL) == 2)
    assert await fleet.busy() == 3  # one slot free, but user:b's two come first
    one.release(three)
    granted = await asyncio.wait_for(pair, 10)
    assert granted is not None and granted.slots == 2
    behind = await asyncio.wait_for(single, 10)
    assert behind is not None and behind.slots == 1
    assert await fleet.busy() == 3 and two.held(MODEL) == 3
    two.release(granted)
    two.release(behind)
    await fleet.settled(0)
    assert await fleet.redis.hlen(await fleet.key("inflight")) == 0


async def test_tags_advance_by_slots_over_weight_and_slots_are_clamped(fleet: Fleet) -> None:
    one = fleet.ledger()
    grant = await one.acquire(MODEL, 2, "user:a", slots=5, weight=2.0)
    assert grant is not None and grant.slots == 2 and await fleet.busy() == 2
    assert await fleet.redis.hget(await fleet.key("fin:1"), "user:a") == b"1"  # 2 slots / 2
    one.release(grant)
    await fleet.settled(0)


async def test_a_dead_gateways_k_slots_all_come_back(fleet: Fleet) -> None:
    dead, live = fleet.ledger(lease_seconds=1.0), fleet.ledger()
    assert await dead.acquire(MODEL, 4, "user:a", slots=3) is not None
    for task in dead._loops:  # noqa: SLF001  # killed: no heartbeat, no leave
        task.cancel()
    waiter = asyncio.create_task(live.acquire(MODEL, 4, "user:b", slots=2))
    await until(lambda: live.waiting(MODEL) == 1)
    granted = await asyncio.wait_for(waiter, 15)
    assert granted is not None and granted.slots == 2
    assert await fleet.busy() == 2  # all three reaped, not one
    dead._loops.clear()  # noqa: SLF001

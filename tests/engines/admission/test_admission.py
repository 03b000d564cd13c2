"""The admission queue's discipline: fairness, weights, priorities, positions, capacity
changes, rejections and cancellation, on a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatgate.engines.admission.queue import (
    AdmissionQueue,
    AdmissionRejected,
    Grant,
    QueueFull,
    QueueTimeout,
)
from tests.helpers import FakeClock


async def settle() -> None:
    """Let every ready task run until it blocks again."""
    for _ in range(5):
        await asyncio.sleep(0)


class Harness:
    """Submits labelled requests and records the order in which they are admitted."""

    def __init__(self, queue: AdmissionQueue) -> None:
        self.queue = queue
        self.order: list[str] = []
        self.held: list[Grant] = []
        self.positions: dict[str, list[int]] = {}
        self.tasks: list[asyncio.Task[Grant]] = []

    def submit(self, label: str, tenant: str, **kwargs: Any) -> asyncio.Task[Grant]:
        reports = self.positions.setdefault(label, [])

        async def run() -> Grant:
            grant = await self.queue.acquire(tenant, on_position=reports.append, **kwargs)
            self.order.append(label)
            self.held.append(grant)
            return grant

        task = asyncio.create_task(run())
        self.tasks.append(task)
        return task

    async def hold(self, tenant: str, count: int = 1, slots: int = 1) -> None:
        for _ in range(count):
            self.held.append(await self.queue.acquire(tenant, slots=slots))

    async def serve(self, count: int) -> None:
        """Free the oldest held slot ``count`` times, letting the next waiter in each time."""
        for _ in range(count):
            self.queue.release(self.held.pop(0))
            await settle()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def harness(clock: FakeClock) -> AsyncIterator[Harness]:
    # The discipline alone; the headroom slot has tests of its own below.
    h = Harness(AdmissionQueue("pool", 1, clock=clock, headroom_window=None))
    yield h
    await h.close()


async def test_admits_at_once_up_to_capacity(clock: FakeClock) -> None:
    queue = AdmissionQueue("pool", 2, clock=clock)
    first = await queue.acquire("a")
    second = await queue.acquire("b", priority="batch")
    assert (first.tenant, first.priority, first.waited) == ("a", "api", 0.0)
    assert second.priority == "batch" and first != second
    assert queue.busy == 2 and queue.waiting == 0
    assert queue.snapshot().in_flight == {"a": 1, "b": 1}
    queue.release(first)
    queue.release(second)
    assert queue.busy == 0 and queue.snapshot().in_flight == {}


async def test_a_burst_does_not_starve_a_newcomer(harness: Harness) -> None:
    await harness.hold("a")
    for i in range(16):
        harness.submit(f"a{i}", "a")
    await settle()
    harness.submit("b", "b")
    await settle()
    await harness.serve(3)
    # a already holds the slot (charged like any request): b gets the next free one.
    assert harness.order == ["b", "a0", "a1"]


async def test_a_newcomer_goes_first_once_the_burst_is_being_served(harness: Harness) -> None:
    await harness.hold("a")
    for i in range(8):
        harness.submit(f"a{i}", "a")
    await settle()
    await harness.serve(3)
    harness.submit("b", "b")
    await settle()
    await harness.serve(2)
    assert harness.order == ["a0", "a1", "a2", "b", "a3"]


async def test_two_backlogged_tenants_alternate(harness: Harness) -> None:
    await harness.hold("x")
    for i in range(4):
        harness.submit(f"a{i}", "a")
    await settle()
    for i in range(4):
        harness.submit(f"b{i}", "b")
    await settle()
    await harness.serve(8)
    assert harness.order == ["a0", "b0", "a1", "b1", "a2", "b2", "a3", "b3"]


async def test_weight_two_gets_twice_the_slots(harness: Harness) -> None:
    await harness.hold("x")
    for i in range(12):
        harness.submit(f"a{i}", "a", weight=2.0)
        harness.submit(f"b{i}", "b")
    await settle()
    await harness.serve(12)
    served = [label[0] for label in harness.order]
    assert served.count("a") == 8 and served.count("b") == 4
    for end in range(1, 13):  # within the bound |n_a/2 - n_b| <= 1/2 + 1/1
        assert abs(served[:end].count("a") - 2 * served[:end].count("b")) <= 2


async def test_priorities_are_strict(harness: Harness) -> None:
    await harness.hold("x")
    harness.submit("batch", "a", priority="batch")
    harness.submit("api", "b", priority="api")
    await settle()
    harness.submit("interactive", "c", priority="interactive")
    harness.submit("batch2", "c", priority="batch")
    await settle()
    assert harness.positions["api"] == [0, 1]
    assert harness.positions["batch"] == [0, 1, 2]
    await harness.serve(4)
    assert harness.order == ["interactive", "api", "batch", "batch2"]


async def test_fairness_is_per_class(harness: Harness) -> None:
    """A tenant's batch backlog does not count against its interactive requests."""
    await harness.hold("x")
    for i in range(3):
        harness.submit(f"batch{i}", "a", priority="batch")
    harness.submit("b0", "b", priority="interactive")
    harness.submit("b1", "b", priority="interactive")
    await settle()
    harness.submit("a", "a", priority="interactive")
    await settle()
    await harness.serve(3)
    assert harness.order == ["b0", "a", "b1"]


async def test_a_freed_slot_is_never_overtaken(harness: Harness) -> None:
    await harness.hold("a")
    waiter = harness.submit("w", "b")
    await settle()
    harness.queue.release(harness.held.pop(0))
    assert harness.queue.busy == 1, "the slot went to the waiter before it even ran"
    late = harness.submit("late", "c")
    await settle()
    assert waiter.done() and not late.done()
    assert harness.queue.waiting == 1 and harness.order == ["w"]


async def test_positions_are_reported_only_when_they_change(harness: Harness) -> None:
    await harness.hold("x")
    harness.submit("a0", "a")
    harness.submit("a1", "a")
    await settle()
    harness.submit("b0", "b")  # same start tag as a0, so it lands between a0 and a1
    await settle()
    assert harness.positions == {"a0": [0], "a1": [1, 2], "b0": [1]}
    await harness.serve(1)
    assert harness.positions == {"a0": [0], "a1": [1, 2, 1], "b0": [1, 0]}
    newcomer = harness.submit("c0", "c")  # lands between b0 and a1: b0 is not told
    await settle()
    assert harness.positions["c0"] == [1] and harness.positions["a1"] == [1, 2, 1, 2]
    newcomer.cancel()
    await settle()
    assert harness.positions["b0"] == [1, 0] and harness.positions["a1"] == [1, 2, 1, 2, 1]


async def test_no_position_report_when_admitted_at_once(harness: Harness) -> None:
    task = harness.submit("now", "a")
    await settle()
    assert task.done() and harness.positions["now"] == []


async def test_a_failing_position_callback_does_not_break_the_queue(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    queue = AdmissionQueue("pool", 1, clock=clock)
    held = await queue.acquire("a")

    def broken(position: int) -> None:
        raise RuntimeError("ui gone")

    task = asyncio.create_task(queue.acquire("b", on_position=broken))
    await settle()
    queue.release(held)
    queue.release(await task)
    assert "on_position callback failed" in caplog.text and queue.busy == 0


async def test_raising_capacity_admits_waiters_at_once(harness: Harness) -> None:
    await harness.hold("x")
    for i in range(3):
        harness.submit(f"a{i}", "a")
    await settle()
    harness.queue.capacity = 3
    await settle()
    assert harness.order == ["a0", "a1"] and harness.queue.busy == 3
    assert harness.positions["a2"] == [2, 0]


async def test_lowering_capacity_keeps_held_slots(harness: Harness) -> None:
    harness.queue.capacity = 3
    await harness.hold("x", 3)
    harness.queue.capacity = 1
    assert harness.queue.busy == 3
    harness.submit("a", "a")
    await settle()
    await harness.serve(2)
    assert harness.order == [] and harness.queue.busy == 1
    await harness.serve(1)
    assert harness.order == ["a"] and harness.queue.busy == 1


async def test_capacity_cannot_be_negative(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        AdmissionQueue("pool", -1, clock=clock)
    with pytest.raises(ValueError):
        await AdmissionQueue("pool", 1, clock=clock).acquire("a", weight=0)


async def test_queue_full_rejects_at_once(harness: Harness) -> None:
    harness.queue.max_waiting = 2
    await harness.hold("x")
    harness.submit("a0", "a")
    harness.submit("a1", "a")
    await settle()
    with pytest.raises(QueueFull) as caught:
        await harness.queue.acquire("b")
    assert isinstance(caught.value, AdmissionRejected)
    assert caught.value.reason == "queue_full" and caught.value.retry_after >= 1
    assert "2 requests are already waiting" in str(caught.value)
    assert harness.queue.waiting == 2


async def test_timeout_leaves_the_queue_with_an_estimate(
    harness: Harness, clock: FakeClock
) -> None:
    queue = harness.queue
    await harness.hold("x")
    clock.now += 30  # slots are held for about 30 s
    queue.release(harness.held.pop(0))
    await harness.hold("x")
    behind = harness.submit("b", "b")
    await settle()
    with pytest.raises(QueueTimeout) as caught:
        await queue.acquire("a", priority="interactive", timeout=0)
    assert caught.value.reason == "timeout" and caught.value.retry_after == 30.0
    assert queue.waiting == 1 and harness.positions["b"] == [0, 1, 0]
    await harness.serve(1)
    assert behind.done() and harness.order == ["b"]


async def test_a_timed_out_request_is_not_charged_to_its_tenant(harness: Harness) -> None:
    await harness.hold("x")
    harness.submit("a0", "a")
    await settle()
    with pytest.raises(QueueTimeout):
        await harness.queue.acquire("b", timeout=0)
    harness.submit("a1", "a")
    harness.submit("b1", "b")
    await settle()
    await harness.serve(3)
    assert harness.order == ["a0", "b1", "a1"]


async def test_cancelled_waiter_leaves_the_queue(harness: Harness) -> None:
    await harness.hold("x")
    first = harness.submit("a", "a")
    harness.submit("b", "b")
    await settle()
    first.cancel()
    await settle()
    assert first.cancelled() and harness.queue.waiting == 1
    assert harness.positions["b"] == [1, 0]
    await harness.serve(1)
    assert harness.order == ["b"] and harness.queue.snapshot().in_flight == {"b": 1}


async def test_cancelled_right_after_grant_gives_the_slot_back(harness: Harness) -> None:
    await harness.hold("x")
    granted = harness.submit("a", "a")
    harness.submit("b", "b")
    await settle()
    harness.queue.release(harness.held.pop(0))  # hands the slot to a, which has not run yet
    granted.cancel()
    await settle()
    assert granted.cancelled()
    assert harness.order == ["b"] and harness.queue.busy == 1
    assert harness.queue.snapshot().in_flight == {"b": 1}


async def test_release_twice_or_elsewhere_raises(clock: FakeClock) -> None:
    queue = AdmissionQueue("pool", 2, clock=clock)
    other = AdmissionQueue("other", 1, clock=clock)
    grant = await queue.acquire("a")
    kept = await queue.acquire("a")
    queue.release(grant)
    with pytest.raises(ValueError):
        queue.release(grant)
    with pytest.raises(ValueError):
        other.release(kept)
    forged = Grant(kept.tenant, kept.priority, kept.waited, kept.ticket + 1000)
    with pytest.raises(ValueError):
        queue.release(forged)
    assert queue.busy == 1 and queue.snapshot().in_flight == {"a": 1}
    queue.release(kept)


async def test_snapshot_and_wait_times(harness: Harness, clock: FakeClock) -> None:
    await harness.hold("x")
    harness.submit("a", "a", priority="interactive")
    await settle()
    clock.now += 2
    harness.submit("b", "b", priority="batch")
    harness.submit("c", "b", priority="batch")
    await settle()
    clock.now += 3
    snap = harness.queue.snapshot()
    assert (snap.name, snap.busy, snap.capacity, snap.waiting) == ("pool", 1, 1, 3)
    assert snap.waiting_by_priority == {"interactive": 1, "api": 0, "batch": 2}
    assert snap.in_flight == {"x": 1} and snap.oldest_wait == 5.0 and snap.mean_hold is None
    await harness.serve(1)
    assert harness.held[-1].waited == 5.0 and harness.queue.snapshot().mean_hold == 5.0
    assert harness.queue.snapshot().oldest_wait == 3.0


async def test_headroom_keeps_a_slot_for_tenants_holding_none(clock: FakeClock) -> None:
    """While two tenants use a 3-slot pool, a tenant holding slots may not take the last
    free one: a newcomer gets it at once instead of waiting for the flood to finish."""
    queue = AdmissionQueue("pool", 3, clock=clock, headroom_window=60)
    alone = [await queue.acquire("a") for _ in range(3)]  # alone: every slot
    for grant in alone:
        queue.release(grant)
    b = await queue.acquire("b")  # now two tenants are about
    a1 = await queue.acquire("a")
    waiting = asyncio.create_task(queue.acquire("a"))  # would take the last free slot
    await settle()
    assert not waiting.done() and queue.busy == 2
    c = await queue.acquire("c")  # a tenant holding none takes it at once
    assert c.waited == 0.0 and queue.busy == 3
    queue.release(b)
    await settle()
    assert not waiting.done()  # the freed slot is headroom again
    queue.release(c)
    clock.now += 61  # b and c went quiet: the headroom lapses
    queue.release(a1)
    await settle()
    assert waiting.done()
    queue.release(await waiting)
    assert queue.busy == 0


async def test_small_pools_keep_no_headroom(clock: FakeClock) -> None:
    queue = AdmissionQueue("pool", 2, clock=clock, headroom_window=60)
    b = await queue.acquire("b")
    a = await queue.acquire("a")
    assert queue.busy == 2
    queue.release(a)
    queue.release(b)
    assert queue.busy == 0


# Requests for n answers: the engine generates them at once, one slot each.


async def test_a_request_for_k_answers_holds_k_slots(clock: FakeClock) -> None:
    queue = AdmissionQueue("pool", 4, clock=clock, headroom_window=None)
    three = await queue.acquire("a", slots=3)
    assert three.slots == 3 and queue.busy == 3
    assert queue.snapshot().in_flight == {"a": 3} and queue.snapshot().busy == 3
    two = asyncio.create_task(queue.acquire("b", slots=2))
    await settle()
    assert not two.done() and queue.busy == 3 and queue.waiting == 1  # one free, two asked
    queue.release(three)  # frees all three: b's two fit
    await settle()
    assert two.done() and (await two).slots == 2
    assert queue.busy == 2 and queue.snapshot().in_flight == {"b": 2}
    queue.release(await two)
    assert queue.busy == 0 and queue.snapshot().in_flight == {}


async def test_retry_after_counts_the_slots_ahead_not_the_requests(clock: FakeClock) -> None:
    """Two requests for 2 answers each ahead on a 2-slot pool holding slots ~30 s: four
    slots' worth of holds (2 x 30 s over 2 slots) come before a new request, not two."""
    queue = AdmissionQueue("pool", 2, clock=clock, headroom_window=None)
    first = await queue.acquire("x", slots=2)
    clock.now += 30
    queue.release(first)
    held = await queue.acquire("x", slots=2)
    waiters = [asyncio.create_task(queue.acquire(t, slots=2)) for t in ("a", "b")]
    await settle()
    with pytest.raises(QueueTimeout) as timed_out:
        await queue.acquire("c", timeout=0)
    assert timed_out.value.retry_after == 75.0  # (2 + 2 + its own 1) x 15 s per slot
    queue.max_waiting = 2
    with pytest.raises(QueueFull) as full:
        await queue.acquire("c", slots=2)
    assert full.value.retry_after == 90.0  # (2 + 2 + 2) x 15 s
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    queue.release(held)


async def test_release_frees_what_was_granted_not_what_the_grant_says(clock: FakeClock) -> None:
    queue = AdmissionQueue("pool", 4, clock=clock, headroom_window=None)
    grant = await queue.acquire("a", slots=3)
    queue.release(Grant(grant.tenant, grant.priority, grant.waited, grant.ticket, slots=1))
    assert queue.busy == 0 and queue.snapshot().in_flight == {}


async def test_tags_advance_by_the_slots_a_request_holds(harness: Harness) -> None:
    """Each 2-slot request of A costs two of B's 1-slot ones: B gets as many slots."""
    harness.queue.capacity = 2
    await harness.hold("x", slots=2)
    for i in range(3):
        harness.submit(f"a{i}", "a", slots=2)
    await settle()
    for i in range(3):
        harness.submit(f"b{i}", "b")
    await settle()
    await harness.serve(6)
    # Charged one each, they would alternate: a0 b0 a1 b1 a2 b2.
    assert harness.order == ["a0", "b0", "b1", "a1", "b2", "a2"]
    assert [g.slots for g in harness.held] == [2]


async def test_a_k_slot_waiter_is_not_overtaken_by_smaller_ones(harness: Harness) -> None:
    """Strict order: slots freed one by one wait for the 3-slot request ahead, else a
    stream of 1-slot requests would keep three from ever being free at once."""
    harness.queue.capacity = 3
    await harness.hold("x", 3)
    harness.submit("big", "a", slots=3)
    await settle()
    for i in range(2):
        harness.submit(f"small{i}", "b")
    await settle()
    assert harness.positions == {"big": [0], "small0": [1], "small1": [2]}
    await harness.serve(2)
    assert harness.order == [] and harness.queue.busy == 1  # two free, kept for big
    await harness.serve(1)
    assert harness.order == ["big"] and harness.queue.busy == 3
    await harness.serve(1)
    assert harness.order == ["big", "small0", "small1"]


async def test_more_slots_than_the_pool_has_are_clamped_to_it(clock: FakeClock) -> None:
    queue = AdmissionQueue("pool", 2, clock=clock, headroom_window=None)
    grant = await queue.acquire("a", slots=5)  # would otherwise never be served
    assert grant.slots == 2 and queue.busy == 2
    queue.release(grant)
    queue.capacity = 4
    held = await queue.acquire("x")
    waiter = asyncio.create_task(queue.acquire("a", slots=4))
    await settle()
    assert not waiter.done()
    queue.capacity = 2  # a replica failed: the waiter needs two slots now, not four
    queue.release(held)
    await settle()
    assert waiter.done() and (await waiter).slots == 2 and queue.busy == 2
    with pytest.raises(ValueError):
        await queue.acquire("a", slots=0)


async def test_headroom_with_k_slots(clock: FakeClock) -> None:
    """A tenant holding slots takes k more only if a slot stays free for newcomers; its
    own later requests do not pass its k-slot one meanwhile (they would starve it), a
    newcomer does (the headroom's point)."""
    queue = AdmissionQueue("pool", 5, clock=clock, headroom_window=60)
    b = await queue.acquire("b")
    a1 = await queue.acquire("a")
    big = asyncio.create_task(queue.acquire("a", slots=3))  # three of three free: no headroom
    await settle()
    small = asyncio.create_task(queue.acquire("a"))  # would fit, but is behind big
    await settle()
    assert not big.done() and not small.done() and queue.busy == 2
    c = await queue.acquire("c", slots=2)  # holds none: may take the headroom
    assert c.waited == 0.0 and queue.busy == 4
    queue.release(c)
    await settle()
    assert not big.done() and not small.done() and queue.busy == 2
    queue.release(b)
    await settle()
    assert big.done() and (await big).slots == 3  # one of four stays free
    assert not small.done() and queue.busy == 4  # the last free slot is headroom
    queue.release(a1)
    await settle()
    assert small.done()
    queue.release(await big)
    queue.release(await small)
    assert queue.busy == 0


async def test_a_timed_out_k_slot_waiter_is_not_charged(harness: Harness) -> None:
    harness.queue.capacity = 2
    await harness.hold("x", slots=2)
    harness.submit("a0", "a")
    await settle()
    with pytest.raises(QueueTimeout):
        await harness.queue.acquire("b", slots=2, timeout=0)
    harness.submit("a1", "a")
    harness.submit("b1", "b")
    await settle()
    await harness.serve(2)
    assert harness.order == ["a0", "b1", "a1"]

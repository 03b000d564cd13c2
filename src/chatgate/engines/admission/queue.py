"""Admission control for one engine pool: a fixed number of slots and a fair wait queue.

Engines serve their slots first come, first served, so one user's burst of streams makes
everybody else's short request wait behind all of it. The gateway therefore keeps every
request beyond the pool's capacity in its own queue and hands each freed slot to the
next waiter in this order:

1. Strict priority: an ``interactive`` waiter goes before any ``api`` waiter, which goes
   before any ``batch`` waiter. A steady interactive load can starve batch work; that is
   the point of the classes.
2. Within a class, start-time fair queuing (Goyal, Vin and Cheng, 1996) between tenants.
   Each class keeps a virtual time V (the start tag of its last dispatched waiter) and
   each tenant's last finish tag F. A new waiter gets ``S = max(V, F)`` and
   ``F = S + 1/weight``; the smallest S goes first, ties by arrival.

A request for ``n`` answers holds n slots (llama-server and vLLM generate them at once,
one slot each) and is charged n: ``F = S + n/weight``. Fairness bound (a request costs its
slots: the gateway cannot know how long it holds them): while tenants i and j of one class
both have waiters, the slots n_i and n_j they are granted satisfy ``|n_i/w_i - n_j/w_j| <=
k_i/w_i + k_j/w_j``, k being the most slots one request of the tenant holds (1 without
``n``). Requests admitted at once are charged too, so a tenant that holds k slots queues k
tags behind one that holds none: a tenant with nothing in flight or waiting that sends one
request is served at the next free slots (after the waiters of higher classes, and after
at most one waiter of each other tenant whose tag ties with it), however long the others'
backlogs. Measured on the embedded engine (bench/README.md): the newcomer's first token
went from 30 s behind a 16-stream flood to about one request's time.

Order is strict: a waiter needing more slots than are free stops all behind it (freed
slots wait for it); letting smaller ones pass would let a steady stream of them keep k
slots from ever being free at once, starving every request for n answers. The price: up
to k - 1 idle slots until k are free. A waiter only the headroom keeps out (below) is
passed, as with one slot, but never by its own tenant's later waiters, so it is served
once its tenant's earlier requests finish at the latest. A request for more slots than the
pool has is clamped to it: ``openai_api/service._choices`` refuses n above a replica's
slots, but a pool whose replicas failed, or whose slot count is a default, may have fewer,
and the request would never be served.

A request is admitted at once only when its slots are free and nobody waits, so no one
overtakes a waiter. Time is read from an injected clock (waits, hold times); timeouts use
the event loop's timer. Waiters sleep on futures: freed slots are handed to them.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Literal, get_args

from chatgate.engines.admission.headroom import Headroom

log = logging.getLogger("chatgate.engines")

Priority = Literal["interactive", "api", "batch"]
RejectReason = Literal["queue_full", "timeout"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
_RANK: dict[str, int] = {name: rank for rank, name in enumerate(PRIORITIES)}
PRIORITY_RANK: Mapping[str, int] = _RANK  # 0 first: the shared ledger orders classes so too
# Weight of the newest hold time in the rolling mean used for retry-after estimates.
_HOLD_ALPHA = 0.2
_tickets = itertools.count(1)


def next_ticket() -> int:
    """A grant id unique in this process (the shared ledger's grants draw from it too)."""
    return next(_tickets)


class AdmissionRejected(Exception):
    """A request the queue will not serve; ``retry_after`` (seconds) suits a Retry-After."""

    reason: ClassVar[RejectReason]

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = max(1.0, retry_after)


class QueueFull(AdmissionRejected):
    reason = "queue_full"


class QueueTimeout(AdmissionRejected):
    reason = "timeout"


@dataclass(frozen=True)
class Grant:
    """Held slots. ``ticket`` makes each grant distinct, so it is released exactly once."""

    tenant: str
    priority: Priority
    waited: float  # seconds spent in the queue (0.0 when admitted at once)
    ticket: int
    slots: int = 1  # engine slots held: the request's answers (``n``), clamped to the pool


@dataclass(frozen=True)
class QueueSnapshot:
    name: str
    busy: int
    capacity: int
    waiting: int
    waiting_by_priority: Mapping[Priority, int]
    in_flight: Mapping[str, int]  # held slots per tenant (tenants holding none are absent)
    oldest_wait: float  # seconds the longest waiter has waited; 0.0 when none waits
    mean_hold: float | None  # rolling mean of slot hold time; None before the first release


@dataclass(eq=False, slots=True)
class _Waiter:
    tenant: str
    priority: Priority
    start: float  # start and finish tags, in the class's virtual time
    finish: float
    slots: int  # as asked, clamped to the capacity then
    enqueued: float
    on_position: Callable[[int], None] | None
    future: asyncio.Future[Grant] = field(init=False)
    key: tuple[int, float, int] = field(init=False)  # dispatch order; unique
    position: int = -1  # last reported

    def __post_init__(self) -> None:
        self.future = asyncio.get_running_loop().create_future()
        self.key = (_RANK[self.priority], self.start, next(_tickets))


class _ClassClock:
    """Virtual time of one priority class and its tenants' last finish tags."""

    def __init__(self) -> None:
        self.virtual = 0.0
        self.finish: dict[str, float] = {}
        self.waiting = 0


class AdmissionQueue:
    """Capacity slots + a fair wait queue for one engine pool (a model's replicas)."""

    def __init__(
        self,
        name: str,
        capacity: int,
        *,
        max_waiting: int = 256,
        clock: Callable[[], float] = time.monotonic,
        headroom_window: float | None = 60.0,  # None: no slot kept back
    ) -> None:
        self.name = name
        self._headroom = Headroom(headroom_window, clock) if headroom_window else None
        self.max_waiting = max_waiting
        self._clock = clock
        self._capacity = 0
        self._waiters: list[_Waiter] = []  # in dispatch order
        self._classes = {p: _ClassClock() for p in PRIORITIES}
        self._held: dict[int, tuple[float, int]] = {}  # ticket -> when granted, slots
        self._busy = 0  # slots held
        self._in_flight: dict[str, int] = {}
        self._mean_hold: float | None = None
        self.capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, value: int) -> None:
        """Learned from the engine at run time; lowering it never revokes held slots."""
        if value < 0:
            raise ValueError(f"capacity must be >= 0, not {value}")
        if value != self._capacity:
            self._capacity = value
            self._dispatch()

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def waiting_in(self, priority: Priority) -> int:
        return self._classes[priority].waiting

    async def acquire(
        self,
        tenant: str,
        *,
        weight: float = 1.0,
        priority: Priority = "api",
        timeout: float | None = None,
        on_position: Callable[[int], None] | None = None,
        slots: int = 1,
    ) -> Grant:
        """``slots`` slots (clamped to the capacity), at once or after waiting; raises
        QueueFull or QueueTimeout."""
        if not weight > 0 or priority not in _RANK or slots < 1:
            raise ValueError(f"bad weight {weight!r}, priority {priority!r} or slots {slots!r}")
        if self._headroom is not None:
            self._headroom.saw(tenant)
        need = max(1, min(slots, self._capacity))
        if not self._waiters and self._may_take(tenant, need):
            self._charge(tenant, priority, need / weight)
            return self._grant(tenant, priority, 0.0, need)
        if len(self._waiters) >= self.max_waiting:
            raise QueueFull(
                f"{self.name}: {len(self._waiters)} requests are already waiting",
                self._estimate(len(self._waiters), need),
            )
        waiter = self._enqueue(tenant, priority, need / weight, need, on_position)
        self._dispatch()  # a slot kept as headroom may be free for this one
        timer = None
        if timeout is not None:
            timer = asyncio.get_running_loop().call_later(timeout, self._expire, waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def release(self, grant: Grant) -> None:
        """Give a grant's slots back; the next waiters get them. Unknown or repeated grants
        raise. The slots freed are those recorded when granted, not the grant's word."""
        held = self._held.pop(grant.ticket, None)
        if held is None:
            raise ValueError(f"{self.name}: grant {grant.ticket} is not held here")
        granted, slots = held
        self._busy -= slots
        count = self._in_flight[grant.tenant] - slots
        if count:
            self._in_flight[grant.tenant] = count
        else:
            del self._in_flight[grant.tenant]
        self.record_hold(max(0.0, self._clock() - granted))
        self._dispatch()

    def record_hold(self, seconds: float) -> None:
        """One grant's hold time, for retry-after estimates (also of the shared ledger's)."""
        mean = self._mean_hold
        self._mean_hold = seconds if mean is None else mean + _HOLD_ALPHA * (seconds - mean)

    def snapshot(self) -> QueueSnapshot:
        now = self._clock()
        oldest = min((w.enqueued for w in self._waiters), default=now)
        return QueueSnapshot(
            name=self.name,
            busy=self.busy,
            capacity=self._capacity,
            waiting=len(self._waiters),
            waiting_by_priority={p: c.waiting for p, c in self._classes.items()},
            in_flight=dict(self._in_flight),
            oldest_wait=max(0.0, now - oldest),
            mean_hold=self._mean_hold,
        )

    def _grant(self, tenant: str, priority: Priority, waited: float, slots: int) -> Grant:
        grant = Grant(tenant, priority, waited, next(_tickets), slots)
        self._held[grant.ticket] = (self._clock(), slots)
        self._busy += slots
        self._in_flight[tenant] = self._in_flight.get(tenant, 0) + slots
        return grant

    def _charge(self, tenant: str, priority: Priority, cost: float) -> None:
        """A request admitted at once is served too: it moves its tenant's finish tag on
        (by slots / weight), so a tenant already holding slots queues behind one holding
        none."""
        cls = self._classes[priority]
        start = max(cls.virtual, cls.finish.get(tenant, 0.0))
        cls.finish[tenant] = start + cost
        cls.virtual = start

    def _forget_idle(self, cls: _ClassClock) -> None:
        """A class nobody waits in: tags of tenants holding no slot are dropped (they start
        even again), those of tenants still holding slots are kept (bounded by them)."""
        cls.finish = {t: f for t, f in cls.finish.items() if t in self._in_flight}

    def _enqueue(
        self,
        tenant: str,
        priority: Priority,
        cost: float,
        slots: int,
        on_position: Callable[[int], None] | None,
    ) -> _Waiter:
        cls = self._classes[priority]
        start = max(cls.virtual, cls.finish.get(tenant, 0.0))
        waiter = _Waiter(tenant, priority, start, start + cost, slots, self._clock(), on_position)
        cls.finish[tenant] = waiter.finish
        cls.waiting += 1
        index = bisect.bisect(self._waiters, waiter.key, key=lambda w: w.key)
        self._waiters.insert(index, waiter)
        self._report(index)
        return waiter

    def _remove(self, waiter: _Waiter) -> int:
        """Take out a waiter that will not be served (timed out or cancelled); its place."""
        index = bisect.bisect_left(self._waiters, waiter.key, key=lambda w: w.key)
        if index == len(self._waiters) or self._waiters[index] is not waiter:
            return -1
        del self._waiters[index]
        cls = self._classes[waiter.priority]
        cls.waiting -= 1
        if cls.finish.get(waiter.tenant) == waiter.finish:
            cls.finish[waiter.tenant] = waiter.start  # its tag is not charged to the tenant
        if not cls.waiting:
            self._forget_idle(cls)
        self._report(index)
        return index

    def _may_take(self, tenant: str, need: int) -> bool:
        """``need`` free slots, and for a tenant already holding slots the headroom left
        free beyond them."""
        free = self._capacity - self._busy
        if free < need:
            return False
        if self._headroom is None or tenant not in self._in_flight:
            return True
        return free - need >= self._headroom.reserve(self._capacity)

    def _dispatch(self) -> None:
        """Hand free slots to the waiters in order, then tell the rest their place. One
        needing more than are free stops the round; one the headroom keeps out is passed,
        but not by its tenant's later waiters (see the module's docstring)."""
        index, served = 0, 0
        passed: set[str] = set()
        while index < len(self._waiters) and self._busy < self._capacity:
            waiter = self._waiters[index]
            need = min(waiter.slots, self._capacity)  # the capacity may have dropped since
            if self._capacity - self._busy < need:
                break
            if waiter.tenant in passed or not self._may_take(waiter.tenant, need):
                passed.add(waiter.tenant)
                index += 1
                continue
            del self._waiters[index]
            served += 1
            cls = self._classes[waiter.priority]
            cls.virtual = waiter.start
            cls.waiting -= 1
            if not cls.waiting:
                self._forget_idle(cls)  # its busy period ended
            waited = max(0.0, self._clock() - waiter.enqueued)
            waiter.future.set_result(self._grant(waiter.tenant, waiter.priority, waited, need))
        if served:
            self._report(0)

    def _report(self, start: int) -> None:
        """Tell waiters from ``start`` on how many are ahead of them, where that changed."""
        for index in range(start, len(self._waiters)):
            waiter = self._waiters[index]
            if waiter.position == index or waiter.on_position is None:
                continue
            waiter.position = index
            try:
                waiter.on_position(index)
            except Exception:
                log.exception("%s: on_position callback failed", self.name)

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.future.done():
            return
        ahead = self._remove(waiter)
        waiter.future.set_exception(
            QueueTimeout(
                f"{self.name}: no slot free after {self._clock() - waiter.enqueued:.1f} s",
                self._estimate(max(0, ahead), waiter.slots),
            )
        )

    def _abandon(self, waiter: _Waiter) -> None:
        """The waiting task was cancelled: leave the queue, or give back a slot it got."""
        future = waiter.future
        if not future.done() or future.cancelled():
            self._remove(waiter)
        elif future.exception() is None:
            self.release(future.result())

    def estimate(self, slots: int) -> float:
        """Seconds until ``slots`` slots' worth of requests are likely served."""
        per_slot = (self._mean_hold or 1.0) / max(1, self._capacity)
        return max(1.0, math.ceil(slots * per_slot))

    def _estimate(self, ahead: int, need: int) -> float:
        """Seconds until the first ``ahead`` waiters (by the slots each asks) and then a
        request for ``need`` slots are likely served."""
        return self.estimate(sum(w.slots for w in self._waiters[:ahead]) + need)

"""Admission shared by a fleet of gateways through Redis: one slot ledger and one fair queue
per model, however many gateways stand in front of its engines.

Without it, each of G gateways believes it owns all of an engine's slots: up to G x slots
requests reach the engine, which queues them first come, first served, and one user's
burst through gateway 1 starves a user of gateway 2 again. Here every decision of
``admission/queue.py``'s discipline (strict priority classes, start-time fair queuing by weight,
the headroom slot) is made by a Lua script on state in Redis (``ledger_lua.py``), so the
fleet behaves as one ``AdmissionQueue`` whose capacity is the model's slots.

Costs: one EVALSHA to be admitted when a slot is free, one to release (after the response);
calls of one event-loop turn share a pipeline (``ledger_redis.py``); a queued request adds
one BLPOP delivery, on one blocking connection per gateway. Measured (docs/engines.md):
+0.46 gateway CPU ms per request in bench/overhead.py on the 2-core sandbox.

Leases: every slot a gateway holds is a field of its ``held:<gw>`` hash, and the gateway
keeps ``alive:<gw>`` (TTL ``lease_seconds``, 10 s by default) renewed every second and by
every admission. Each gateway's heartbeat reaps the gateways whose lease lapsed: their
slots and waiters go back, so a gateway killed with -9 frees its slots within
``lease_seconds`` + 1 s; gateway ids are random per process, so a (re)start never frees a
live gateway's slots. Releases are idempotent (by ticket) and retried until Redis takes them.

Fairness bound. While Redis answers, the fleet keeps one queue, so the single-queue bound of
``admission/queue.py`` holds across gateways, independently of G: while tenants i and j of one
class both wait, the slots they are granted satisfy |n_i/w_i - n_j/w_j| <= k_i/w_i + k_j/w_j
(k: the most slots one request of the tenant holds, its ``n``), and the engines see at most
``slots`` sequences of the fleet at once. The deviations are in time, not in order: freed
slots reach a waiter on another gateway one Redis round trip (the release) plus one BLPOP
delivery later (about 1 ms on a LAN); a dead gateway's slots stay counted busy for at most
``lease_seconds`` + 1 s (capacity idles, nobody overtakes);
a gateway whose event loop stalls beyond its lease is reaped and may then run up to its
held slots beyond ``slots`` until they finish (it logs ``lease lapsed``); so may every
gateway after Redis restarts empty (the slots held then are forgotten). Gateways must
agree on the model's slots (they do: each sums the same registry; while one learns a new
count, each decision uses the count of the gateway that makes it).

Redis down or not configured: each gateway falls back to its own ``AdmissionQueue`` (fair
per gateway, up to G x slots at the engine), logs once per outage, sets
``chatgate_admission_fallback`` to 1, and tries Redis again after ``retry_seconds``;
requests waiting in Redis when it fails move to the local queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from chatgate.engines.admission.ledger_redis import LedgerRedis
from chatgate.engines.admission.queue import (
    PRIORITY_RANK,
    Grant,
    Priority,
    QueueTimeout,
    next_ticket,
)

log = logging.getLogger("chatgate.engines")

_FAILURES = (RedisError, OSError, TimeoutError)
_GRANT_GRACE = 5.0  # seconds to wait for a grant that raced a timeout
HEADROOM_WINDOW = 60.0  # as admission.AdmissionQueue's default


class _Fallback(Exception):
    """Redis failed while the request waited: it waits in the local queue instead."""


@dataclass(eq=False)
class _Pending:
    model: str
    member: str
    rank: int
    enqueued: float
    on_position: Callable[[int], None] | None
    slots: int  # as asked; as granted once the grant names them
    future: asyncio.Future[float] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class SharedLedger:
    """This gateway's side of the fleet's slot ledger for every model it serves."""

    def __init__(
        self,
        redis_url: str,
        prefix: str = "chatgate",
        *,
        lease_seconds: float = 10.0,
        retry_seconds: float = 5.0,
        on_fallback: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.gateway = uuid.uuid4().hex[:16]
        # "-adm2": entries with slot counts (ledger_lua.py), apart from the older format
        self._prefix = f"{prefix}-adm2"
        self._grants = f"{self._prefix}:grants:"
        self._lease_ms = max(1, int(lease_seconds * 1000))
        self._beat = min(1.0, lease_seconds / 3)
        self._retry = retry_seconds
        self._on_fallback = on_fallback
        self._clock = clock
        self._redis = LedgerRedis(redis_url, self._prefix, self._grants)
        self._capacity: dict[str, int] = {}  # per model, as last seen
        self._held: dict[int, tuple[str, float, int]] = {}  # ticket -> model, when, slots
        self._count: dict[str, int] = {}  # held slots per model
        self._pending: dict[int, _Pending] = {}
        # Releases not yet sent (or that failed): ticket -> model. One task sends them, many
        # in one pipeline under load, so a burst of releases needs one connection, not many.
        self._to_release: dict[int, str] = {}
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._down_until = 0.0
        self.fallback = False
        self._closed = False

    def usable(self) -> bool:
        return self._clock() >= self._down_until

    def held(self, model: str) -> int:
        return self._count.get(model, 0)

    def waiting(self, model: str, priority: Priority | None = None) -> int:
        """Requests of this gateway waiting in the fleet's queue (of one class); not those
        whose admission is still on its way to Redis."""
        if not self._pending:
            return 0
        rank = None if priority is None else PRIORITY_RANK[priority]
        return sum(
            1
            for p in self._pending.values()
            if p.member and p.model == model and rank in (None, p.rank)
        )

    def owns(self, grant: Grant) -> bool:
        return grant.ticket in self._held

    async def acquire(
        self,
        model: str,
        capacity: int,
        tenant: str,
        *,
        weight: float = 1.0,
        priority: Priority = "api",
        timeout: float | None = None,
        on_position: Callable[[int], None] | None = None,
        slots: int = 1,
    ) -> Grant | None:
        """``slots`` of the fleet's slots (clamped to ``capacity``), at once or after
        waiting; None: Redis failed, so the caller admits locally. Raises QueueTimeout."""
        if not weight > 0 or priority not in PRIORITY_RANK or slots < 1:
            raise ValueError(f"bad weight {weight!r}, priority {priority!r} or slots {slots!r}")
        self._capacity[model] = capacity
        self._start()
        ticket, rank = next_ticket(), PRIORITY_RANK[priority]
        pending = _Pending(model, "", rank, self._clock(), on_position, slots)
        self._pending[ticket] = pending  # before the script runs: its grant may come first
        args = (tenant, rank, repr(float(weight)), capacity, HEADROOM_WINDOW, self._lease_ms, slots)
        reply = await self._admit(model, ticket, pending, args)
        if reply is None:
            return None
        if int(reply[0]) == 1:
            self._pending.pop(ticket, None)
            _retrieve(pending.future)
            return self._hold(model, ticket, tenant, priority, 0.0, int(reply[1]))
        pending.member = _text(reply[2])
        self._report(pending, int(reply[1]))
        try:
            waited = await asyncio.wait_for(asyncio.shield(pending.future), timeout)
        except _Fallback:
            return None
        except TimeoutError:
            waited = await self._give_up(ticket, pending)
        except asyncio.CancelledError:
            self._abandon(ticket, pending)
            raise
        return self._hold(model, ticket, tenant, priority, waited, pending.slots)

    async def _admit(
        self, model: str, ticket: int, pending: _Pending, args: tuple[str | int | float, ...]
    ) -> Any:
        """The admission script's reply; None if Redis failed."""
        admit = self._redis.submit("admit", model, self.gateway, ticket, *args)
        try:
            reply = await asyncio.shield(admit)
        except asyncio.CancelledError:  # the client left: once the script ran, free its slot
            self._pending.pop(ticket, None)
            admit.add_done_callback(lambda done: self._after_admit(done, model, ticket, pending))
            raise
        except _FAILURES as exc:
            self._pending.pop(ticket, None)
            _retrieve(pending.future)
            self._to_release[ticket] = model  # it may have run: freed once Redis answers
            self._failed(exc)
            return None
        self._recovered()
        return reply

    def release(self, grant: Grant) -> float:
        """Give a grant's slots back (in the background: this runs after the response); how
        long they were held."""
        held = self._held.pop(grant.ticket, None)
        if held is None:
            raise ValueError(f"grant {grant.ticket} is not held in the shared ledger")
        model, granted, slots = held
        self._count[model] -= slots
        self._free(model, grant.ticket)
        return max(0.0, self._clock() - granted)

    async def close(self) -> None:
        """Stop, and give back this gateway's leases at once rather than after the TTL."""
        self._closed = True
        self._wake.set()
        for task in self._loops:
            task.cancel()
        if self._loops or self._tasks:
            # Bounded: redis-py may swallow a cancellation mid-command; the loops then see
            # _closed at their next turn (at most the BLPOP's 1 s).
            await asyncio.wait([*self._loops, *self._tasks], timeout=3)
        self._loops.clear()
        with contextlib.suppress(*_FAILURES):
            await self._flush()
        for model, capacity in self._capacity.items():
            with contextlib.suppress(*_FAILURES):
                await self._redis.call("leave", model, self.gateway, capacity)
        await self._redis.close()

    def _hold(
        self, model: str, ticket: int, tenant: str, priority: Priority, waited: float, slots: int
    ) -> Grant:
        self._held[ticket] = (model, self._clock(), slots)
        self._count[model] = self._count.get(model, 0) + slots
        return Grant(tenant, priority, waited, ticket, slots)

    async def _give_up(self, ticket: int, pending: _Pending) -> float:
        """The wait timed out: leave the queue, unless a slot was granted meanwhile."""
        try:
            removed = await self._redis.call("cancel", pending.model, pending.member, pending.rank)
        except _FAILURES as exc:
            self._failed(exc)
            removed = 1  # if it is granted later, the grant loop gives it back
        if not removed and not pending.future.done():
            with contextlib.suppress(TimeoutError, _Fallback):
                await asyncio.wait_for(asyncio.shield(pending.future), _GRANT_GRACE)
        self._pending.pop(ticket, None)
        if pending.future.done() and pending.future.exception() is None:
            return pending.future.result()
        waited = self._clock() - pending.enqueued
        raise QueueTimeout(f"{pending.model}: no slot free after {waited:.1f} s", 1.0)

    def _abandon(self, ticket: int, pending: _Pending) -> None:
        """The waiting task was cancelled: leave the queue, or give back what it got."""
        self._pending.pop(ticket, None)
        future = pending.future
        if future.done() and not future.cancelled() and future.exception() is None:
            self._free(pending.model, ticket)
        elif not future.done():
            future.cancel()
            self._spawn(self._cancel(pending.model, ticket, pending.member, pending.rank))

    async def _cancel(self, model: str, ticket: int, member: str, rank: int) -> None:
        """Leave the fleet's queue; if a slot was granted already, give it back."""
        try:
            removed = await self._redis.call("cancel", model, member, rank)
        except _FAILURES:  # if granted after all, the grant loop frees it
            return
        if not removed:
            self._free(model, ticket)

    def _after_admit(
        self, done: asyncio.Future[Any], model: str, ticket: int, pending: _Pending
    ) -> None:
        """The admission of a request that left ran: free the slot, or leave the queue.
        Releases are idempotent, so freeing what was never granted is harmless."""
        _retrieve(pending.future)
        if done.cancelled() or done.exception() is not None or int(done.result()[0]) == 1:
            self._free(model, ticket)
        else:
            member = _text(done.result()[2])
            self._spawn(self._cancel(model, ticket, member, pending.rank))

    def _free(self, model: str, ticket: int) -> None:
        self._to_release[ticket] = model
        self._wake.set()

    async def _flush(self) -> None:
        """Send the pending releases, in one pipeline; kept for a retry if Redis fails."""
        batch, self._to_release = self._to_release, {}
        if not batch:
            return
        calls = [
            ("release", model, (self.gateway, ticket, self._capacity[model]))
            for ticket, model in batch.items()
        ]
        try:
            await self._redis.run(calls)
        except _FAILURES:
            self._to_release.update(batch)  # the heartbeat wakes the release loop again
            raise

    async def _release_loop(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except _FAILURES as exc:
                self._failed(exc)

    def _deliver(self, message: bytes | str) -> None:
        model, ticket_text, slots, _tenant = _text(message).split("\n", 3)
        ticket = int(ticket_text)
        pending = self._pending.pop(ticket, None)
        if pending is None or pending.future.done():  # its waiter left: give it back
            self._free(model, ticket)
            return
        pending.slots = int(slots)  # fewer than asked if the fleet's capacity dropped since
        pending.future.set_result(max(0.0, self._clock() - pending.enqueued))

    def _report(self, pending: _Pending, position: int) -> None:
        if pending.on_position is None or position < 0:
            return
        try:
            pending.on_position(position)
        except Exception:
            log.exception("%s: on_position callback failed", pending.model)

    def _start(self) -> None:
        if not self._loops:
            self._loops = [
                asyncio.create_task(self._grant_loop(), name="chatgate-ledger-grants"),
                asyncio.create_task(self._heartbeat_loop(), name="chatgate-ledger-beat"),
                asyncio.create_task(self._release_loop(), name="chatgate-ledger-release"),
            ]

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _grant_loop(self) -> None:
        key = self._grants + self.gateway
        while not self._closed:
            try:
                item = await self._redis.blpop(key, timeout=1)
            except _FAILURES as exc:
                self._failed(exc)
                await asyncio.sleep(min(self._retry, 1.0))
                continue
            if item is not None:
                self._deliver(item)

    async def _heartbeat_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._beat)
            if not self.usable():
                continue
            try:
                await self._heartbeat()
            except _FAILURES as exc:
                self._failed(exc)
            else:
                self._recovered()

    async def _heartbeat(self) -> None:
        if self._to_release:
            self._wake.set()  # releases that failed: again, now that Redis may answer
        for model, capacity in list(self._capacity.items()):
            waiters = [p for p in self._pending.values() if p.model == model and p.member]
            pairs = [arg for p in waiters for arg in (p.member, p.rank)]
            beat = (self.gateway, self._lease_ms, capacity, *pairs)
            reply = await self._redis.call("beat", model, *beat)
            if int(reply[0]):
                log.warning("%s: took back %s slots of gateways that stopped", model, reply[0])
            if int(reply[1]) and self.held(model):
                log.warning("%s: this gateway's lease lapsed; its slots were reaped", model)
            for pending, position in zip(waiters, reply[2:], strict=True):
                self._report(pending, int(position))

    def _failed(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self._retry
        if not self.fallback:
            log.error("Redis unreachable (%s): admission falls back to this process", exc)
            self.fallback = True
            if self._on_fallback is not None:
                self._on_fallback(True)
        for pending in self._pending.values():  # they wait in the local queue instead
            if not pending.future.done():
                pending.future.set_exception(_Fallback())
        self._pending.clear()

    def _recovered(self) -> None:
        if self.fallback:
            log.warning("Redis reachable again: admission is shared across gateways again")
            self.fallback = False
            if self._on_fallback is not None:
                self._on_fallback(False)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (a _Fallback nobody waits for any more)."""
    if future.done() and not future.cancelled():
        future.exception()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

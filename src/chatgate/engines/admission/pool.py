"""The admission queues of every model's engine pool, and what a request needs to wait in one.

A model's pool holds as many requests at once as its usable replicas have slots (their
``capacity``: llama-server's parallel slots, vLLM's max_num_seqs, or a default); every
request beyond that waits here, in the gateway, where slots are handed out fairly between
users and by priority (``admission/queue.py``), instead of in the engine's first-come-first-served
queue. The capacity follows the replicas: a replica whose circuit opened or whose engine
failed no longer counts.

With Redis (``redis_url``), a fleet of gateways shares one ledger of each model's slots and
one fair queue (``admission/shared.py``); while Redis is down, or without it, each gateway
admits through its own queue.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Gauge, Histogram

from chatgate.engines.admission.queue import (
    PRIORITIES,
    AdmissionQueue,
    AdmissionRejected,
    Grant,
    Priority,
    QueueSnapshot,
    QueueTimeout,
)
from chatgate.engines.admission.shared import SharedLedger
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.observability.metrics import Metrics

DEFAULT_SLOTS = 64  # an engine that tells nothing about its slots (an attached server)


@dataclass(frozen=True)
class Ticket:
    """Who is asking and how urgently: a request's place in the fair queue."""

    tenant: str  # "user:12": fairness is between users (a user's keys share one share)
    priority: Priority = "api"
    weight: float = 1.0
    on_position: Callable[[int], None] | None = None  # waiters ahead, while waiting
    # Engine slots the request occupies: its ``n`` (llama-server and vLLM generate the n
    # answers of one request at once, a slot each), so n of them are held, not one.
    slots: int = 1

    def classed(self, priority: Priority | None, weight: float) -> Ticket:
        """This ticket in the class and with the weight the limits gave the caller's key
        or user (``priority`` None: the route's own class, kept unless weighted)."""
        if weight == 1.0 and priority is None:
            return self
        return dataclasses.replace(self, priority=priority or "api", weight=weight)


@dataclass
class _PoolGauges:
    depth: dict[Priority, Gauge]
    wait: dict[Priority, Histogram]
    busy: Gauge
    capacity: Gauge
    last_waiting: int  # requests waiting when the depth gauges were last set

    @classmethod
    def bind(cls, metrics: Metrics, model_id: str) -> _PoolGauges:
        return cls(
            depth={p: metrics.queue_depth.labels(model_id, p) for p in PRIORITIES},
            wait={p: metrics.queue_wait.labels(model_id, p) for p in PRIORITIES},
            busy=metrics.pool_slots.labels(model_id, "busy"),
            capacity=metrics.pool_slots.labels(model_id, "capacity"),
            last_waiting=1,  # set the depth gauges the first time
        )


class EnginePools:
    """One admission queue per model, sized by its usable replicas' slots."""

    def __init__(
        self,
        registry: ModelRegistry,
        metrics: Metrics | None = None,
        *,
        default_slots: int = DEFAULT_SLOTS,
        max_waiting: int = 256,
        timeout: float = 120.0,
        redis_url: str | None = None,  # shared by every gateway using the same Redis and prefix
        redis_prefix: str = "chatgate",
        lease_seconds: float = 10.0,
    ) -> None:
        self._ledger = (
            SharedLedger(
                redis_url, redis_prefix, lease_seconds=lease_seconds, on_fallback=self._fallback
            )
            if redis_url
            else None
        )
        self._registry = registry
        self._metrics = metrics
        self._default_slots = default_slots
        self._max_waiting = max_waiting
        self._timeout = timeout
        self._queues: dict[str, AdmissionQueue] = {}
        self._gauges: dict[str, _PoolGauges] = {}

    def capacity(self, entry: ModelEntry, usable: list[Endpoint] | None = None) -> int:
        """Slots of the model's usable replicas (``usable``: if already looked up)."""
        replicas = self._registry.usable(entry) if usable is None else usable
        return sum(self.slots_of(endpoint) for endpoint in replicas)

    def slots_of(self, endpoint: Endpoint) -> int:
        return endpoint.capacity or self._default_slots

    def queue(self, entry: ModelEntry, capacity: int | None = None) -> AdmissionQueue:
        """The model's queue, its capacity brought up to date (``capacity``: if known)."""
        slots = self.capacity(entry) if capacity is None else capacity
        queue = self._queues.get(entry.pool_id)
        if queue is None:
            queue = AdmissionQueue(entry.pool_id, slots, max_waiting=self._max_waiting)
            self._queues[entry.pool_id] = queue
        else:
            # Replicas come, go and learn their slots: the pool follows (never below 1 while
            # the model has replicas, so a request can still find out what is wrong).
            queue.capacity = max(slots, 1 if entry.endpoints else 0)
        return queue

    async def acquire(self, entry: ModelEntry, ticket: Ticket) -> Grant:
        usable = self._registry.usable(entry)
        if not usable:
            self._registry.ensure_available(entry)  # a dead pool answers now, not after a wait
        queue = self.queue(entry, self.capacity(entry, usable))
        try:
            grant = await self._admit(entry.pool_id, queue, ticket)
        except AdmissionRejected as exc:
            if self._metrics is not None:
                self._metrics.queue_rejections.labels(entry.pool_id, exc.reason).inc()
            raise _busy(entry, exc) from exc
        finally:
            self._observe(entry.pool_id, queue)
        gauges = self._gauges.get(entry.pool_id)
        if gauges is not None:
            gauges.wait[grant.priority].observe(grant.waited)
        return grant

    def release(self, model_id: str, grant: Grant) -> None:
        queue = self._queues[model_id]
        if self._ledger is not None and self._ledger.owns(grant):
            queue.record_hold(self._ledger.release(grant))
        else:
            queue.release(grant)
        self._observe(model_id, queue)

    def snapshots(self) -> list[QueueSnapshot]:
        """Each model's queue as this gateway sees it (with Redis: its own share of the
        fleet's slots and waiters, admitted through the shared ledger or locally)."""
        for entry in self._registry.all_models():
            self.queue(entry)  # capacities as of now
        snapshots = [queue.snapshot() for queue in self._queues.values()]
        if self._ledger is None:
            return snapshots
        ledger = self._ledger
        return [
            dataclasses.replace(
                s, busy=s.busy + ledger.held(s.name), waiting=s.waiting + ledger.waiting(s.name)
            )
            for s in snapshots
        ]

    async def close(self) -> None:
        if self._ledger is not None:
            await self._ledger.close()

    async def _admit(self, model_id: str, queue: AdmissionQueue, ticket: Ticket) -> Grant:
        """Through the fleet's shared ledger while Redis answers, else this gateway's queue."""
        if self._ledger is not None and self._ledger.usable():
            try:
                grant = await self._ledger.acquire(
                    model_id,
                    queue.capacity,
                    ticket.tenant,
                    weight=ticket.weight,
                    priority=ticket.priority,
                    timeout=self._timeout,
                    on_position=ticket.on_position,
                    slots=ticket.slots,
                )
            except QueueTimeout as exc:
                estimate = queue.estimate(self._ledger.waiting(model_id) + ticket.slots)
                raise QueueTimeout(exc.message, estimate) from exc
            if grant is not None:
                return grant
        return await queue.acquire(
            ticket.tenant,
            weight=ticket.weight,
            priority=ticket.priority,
            timeout=self._timeout,
            on_position=ticket.on_position,
            slots=ticket.slots,
        )

    def _fallback(self, down: bool) -> None:
        if self._metrics is not None:
            self._metrics.admission_fallback.set(1 if down else 0)

    def _observe(self, model_id: str, queue: AdmissionQueue) -> None:
        """The gauges, from counters and pre-bound label children: this runs twice per
        request on the hot path (``labels()`` itself costs more than the update)."""
        gauges = self._gauges.get(model_id)
        if gauges is None:
            if self._metrics is None:
                return
            gauges = self._gauges[model_id] = _PoolGauges.bind(self._metrics, model_id)
        ledger = self._ledger
        waiting = queue.waiting + (ledger.waiting(model_id) if ledger is not None else 0)
        if waiting or gauges.last_waiting:  # nothing waited before or now: no change
            for priority, depth in gauges.depth.items():
                shared = ledger.waiting(model_id, priority) if ledger is not None else 0
                depth.set(queue.waiting_in(priority) + shared)
            gauges.last_waiting = waiting
        gauges.busy.set(queue.busy + (ledger.held(model_id) if ledger is not None else 0))
        gauges.capacity.set(queue.capacity)


def _busy(entry: ModelEntry, exc: AdmissionRejected) -> APIError:
    if exc.reason == "queue_full":
        message = (
            f"The model '{entry.id}' is busy: its queue is full. Try again in"
            f" {math.ceil(exc.retry_after)} s."
        )
    else:
        message = (
            f"The model '{entry.id}' is busy: no slot freed up while this request waited."
            f" Try again in {math.ceil(exc.retry_after)} s."
        )
    return APIError(
        503, message, "engine_busy", headers={"Retry-After": str(math.ceil(exc.retry_after))}
    )

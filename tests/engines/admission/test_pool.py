"""Engine pools: a model's admission queue sized by its usable replicas' slots, and the one
owner of an engine stream waiting in it (``Upstreams.stream``) against fake engines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from chatgate.engines.admission.pool import EnginePools, Ticket
from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint, Timeouts
from chatgate.engines.upstream.failover import EngineCall, Upstreams
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.observability.metrics import Metrics
from tests.fakes.upstream import FakeUpstream

PATH = "/chat/completions"


@pytest_asyncio.fixture
async def client() -> AsyncIterator[EngineClient]:
    c = EngineClient(Timeouts(connect=1.0, first_token=5.0, idle=5.0))
    await c.start()
    yield c
    await c.close()


def pool_of(*endpoints: Endpoint, **options: float) -> tuple[ModelEntry, EnginePools, Metrics]:
    registry = ModelRegistry("m")
    entry = ModelEntry(id="m", name="M", endpoints=list(endpoints))
    registry.add(entry)
    metrics = Metrics()
    defaults = {"default_slots": 4, "max_waiting": 8, "timeout": 5.0}
    pools = EnginePools(registry, metrics, **{**defaults, **options})  # type: ignore[arg-type]
    return entry, pools, metrics


def test_capacity_follows_the_usable_replicas() -> None:
    a = Endpoint("a", "http://a/v1", "m", capacity=5)
    b = Endpoint("b", "http://b/v1", "m")  # says nothing: the default
    entry, pools, _ = pool_of(a, b)
    assert pools.capacity(entry) == 5 + 4
    assert pools.queue(entry).capacity == 9
    b.failure = "crashed"  # a failed engine takes no requests
    assert pools.queue(entry).capacity == 5
    a.failure = "crashed"
    assert pools.queue(entry).capacity == 1  # still one, so a request learns why


async def test_a_full_queue_is_503_with_retry_after() -> None:
    entry, pools, metrics = pool_of(Endpoint("a", "http://a/v1", "m", capacity=1), max_waiting=1)
    held = await pools.acquire(entry, Ticket("user:1"))
    waiter = asyncio.create_task(pools.acquire(entry, Ticket("user:1")))
    await asyncio.sleep(0)
    with pytest.raises(APIError) as info:
        await pools.acquire(entry, Ticket("user:2"))
    assert (info.value.status_code, info.value.code) == (503, "engine_busy")
    assert info.value.headers is not None and int(info.value.headers["Retry-After"]) >= 1
    assert "queue is full" in info.value.message
    rejected = metrics.registry.get_sample_value(
        "chatgate_queue_rejections_total", {"model": "m", "reason": "queue_full"}
    )
    assert rejected == 1
    pools.release("m", held)
    pools.release("m", await waiter)
    assert pools.queue(entry).busy == 0


async def test_a_newcomer_is_served_before_a_flooding_users_backlog(
    client: EngineClient,
) -> None:
    """User A floods a one-slot engine; B's one request gets the next slot, not the last."""
    fake = FakeUpstream()
    await fake.start()
    try:
        endpoint = Endpoint("e", fake.url + "/v1", "m", capacity=1)
        entry, pools, metrics = pool_of(endpoint)
        upstreams = Upstreams(pools._registry, client, metrics, pools)  # noqa: SLF001
        order: list[str] = []
        positions: list[int] = []

        async def ask(tenant: str, label: str) -> float | None:
            body = {"messages": [{"role": "user", "content": "[[chunks=3 delay=0.05]]"}],
                    "stream": True}  # fmt: skip
            track = positions.append if tenant == "user:b" else None
            call = EngineCall(entry, PATH, body, label, Ticket(tenant, on_position=track))
            async with upstreams.stream(call) as upstream:
                order.append(label)
                async for _ in upstream.lines():
                    pass
            return call.queue_ms

        flood = [asyncio.create_task(ask("user:a", f"a{i}")) for i in range(4)]
        while pools.queue(entry).waiting < 3:
            await asyncio.sleep(0.005)
        b = asyncio.create_task(ask("user:b", "b"))
        waits = await asyncio.gather(*flood, b)
        assert order.index("b") <= 2, order  # after the one in flight and at most one more
        assert order[:1] == ["a0"]
        assert positions and positions[-1] == 0  # it heard it was next
        assert waits[-1] is not None and waits[-1] > 0  # queue_ms for its usage row
        assert endpoint.outstanding == 0 and pools.queue(entry).busy == 0
        waited = metrics.registry.get_sample_value(
            "chatgate_queue_wait_seconds_count", {"model": "m", "priority": "api"}
        )
        assert waited == 5
    finally:
        await fake.stop()


async def test_a_model_sharing_anothers_engines_shares_its_slots() -> None:
    # A fine-tuned version on its base's engines (finetune/deploy.py): one set of slots.
    base, pools, _ = pool_of(Endpoint("a", "http://a/v1", "m", capacity=1))
    version = ModelEntry(id="m:tuned@1", name="v1", endpoints=base.endpoints, pool=base.id)
    held = await pools.acquire(base, Ticket("user:1"))
    waiting = asyncio.create_task(pools.acquire(version, Ticket("user:2")))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the engine's one slot is taken, whoever asked for it
    pools.release(base.pool_id, held)
    grant = await asyncio.wait_for(waiting, 5)
    pools.release(version.pool_id, grant)
    assert pools.queue(base).snapshot().busy == 0


async def test_a_tickets_slots_are_held_and_counted_in_the_busy_gauge() -> None:
    """A request for n answers holds n of the pool's slots; the busy gauge says so."""
    entry, pools, metrics = pool_of(Endpoint("a", "http://a/v1", "m", capacity=4))

    def busy() -> float | None:
        labels = {"model": "m", "state": "busy"}
        return metrics.registry.get_sample_value("chatgate_engine_pool_slots", labels)

    wide = await pools.acquire(entry, Ticket("user:1", slots=3))
    assert wide.slots == 3 and pools.queue(entry).busy == 3 and busy() == 3
    waiter = asyncio.create_task(pools.acquire(entry, Ticket("user:2", slots=2)))
    for _ in range(100):
        if pools.queue(entry).waiting:
            break
        await asyncio.sleep(0.01)
    assert not waiter.done() and pools.snapshots()[0].in_flight == {"user:1": 3}
    pools.release("m", wide)
    pair = await asyncio.wait_for(waiter, 5)
    assert pair.slots == 2 and busy() == 2
    pools.release("m", pair)
    assert pools.queue(entry).busy == 0 and busy() == 0


def test_a_ticket_takes_its_keys_class_and_weight_and_keeps_its_slots() -> None:
    ticket = Ticket("user:1", "api", slots=3)
    assert ticket.classed(None, 1.0) is ticket  # nothing set for the key: unchanged
    batch = ticket.classed("batch", 1.0)
    assert (batch.priority, batch.weight, batch.slots, batch.tenant) == ("batch", 1.0, 3, "user:1")
    heavy = ticket.classed(None, 2.0)
    assert (heavy.priority, heavy.weight, heavy.slots) == ("api", 2.0, 3)

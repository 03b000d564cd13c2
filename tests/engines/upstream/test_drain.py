"""The drain deadline against fake engines: a stream, a request still opening, one still
waiting for a slot and a non-streamed one all end in ServerShuttingDown; none fails over,
none counts against its replica, and each engine request is aborted."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from chatgate.engines.admission.pool import EnginePools, Ticket
from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint, Timeouts
from chatgate.engines.upstream.failover import EngineCall, Upstream, Upstreams
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.observability.metrics import Metrics
from chatgate.shutdown import Drain, ServerShuttingDown, ShutdownBudget
from tests.fakes.upstream import FakeUpstream

PATH = "/chat/completions"
LONG = "[[chunks=1000 delay=0.05]]"  # a 50 s answer


@pytest_asyncio.fixture
async def client() -> AsyncIterator[EngineClient]:
    c = EngineClient(Timeouts(connect=1.0, first_token=10.0, idle=10.0))
    await c.start()
    yield c
    await c.close()


class Setup:
    def __init__(self, client: EngineClient, *urls: str, slots: int | None = None) -> None:
        self.endpoints = [
            Endpoint(f"e{i}", url + "/v1", f"e{i}-model", capacity=slots)
            for i, url in enumerate(urls)
        ]
        self.registry = ModelRegistry("m", circuit_failures=2, circuit_open_seconds=60)
        self.entry = ModelEntry(id="m", name="M", endpoints=self.endpoints)
        self.registry.add(self.entry)
        metrics = Metrics()
        self.pools = EnginePools(self.registry, metrics, max_waiting=8, timeout=30.0)
        self.drain = Drain(ShutdownBudget(10.0))
        self.upstreams = Upstreams(self.registry, client, metrics, self.pools, self.drain)

    def call(self, content: str, request_id: str, stream: bool = True) -> EngineCall:
        body = {"messages": [{"role": "user", "content": content}], "stream": stream}
        return EngineCall(self.entry, PATH, body, request_id, Ticket("user:1"))

    def unharmed(self) -> bool:
        """No replica was blamed and every slot and request count was given back."""
        return all(
            e.breaker.consecutive_failures == 0 and e.outstanding == 0 for e in self.endpoints
        ) and (self.pools.queue(self.entry).busy, self.pools.queue(self.entry).waiting) == (0, 0)


async def read_all(upstream: Upstream, first: asyncio.Event) -> None:
    async for _ in upstream.batches():
        first.set()


async def test_a_running_stream_ends_in_server_shutting_down(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, b = fakes
    s = Setup(client, a.url, b.url)
    reading = asyncio.Event()

    async def relay() -> None:
        async with s.upstreams.stream(s.call(LONG, "stream-1")) as upstream:
            await read_all(upstream, reading)

    task = asyncio.create_task(relay())
    await reading.wait()
    s.drain.interrupt()
    with pytest.raises(ServerShuttingDown):
        await task
    assert len(a.served("stream-1")) + len(b.served("stream-1")) == 1  # no failover
    assert s.unharmed() and s.drain.in_flight == 0
    engine = a if a.served("stream-1") else b
    for _ in range(200):  # the engine hears of the closed connection on its own loop turn
        if engine.by_request_id("stream-1").aborted_at is not None:
            break
        await asyncio.sleep(0.01)
    assert engine.by_request_id("stream-1").aborted_at is not None


async def test_a_request_still_opening_is_not_failed_over(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, b = fakes
    a.forced = b.forced = {"first_token_delay": "2"}  # longer than the test takes
    s = Setup(client, a.url, b.url)
    call = s.call("hi", "opening-1")
    task = asyncio.create_task(s.upstreams.stream(call).__aenter__())
    while not (a.served("opening-1") or b.served("opening-1")):
        await asyncio.sleep(0.01)
    s.drain.interrupt()
    with pytest.raises(ServerShuttingDown):
        await task
    assert len(call.tried) == 1  # not retried on the other replica
    assert len(a.served("opening-1")) + len(b.served("opening-1")) == 1
    assert s.unharmed()


async def test_a_queued_request_gets_503_and_leaves_the_queue(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, _ = fakes
    s = Setup(client, a.url, slots=1)
    reading = asyncio.Event()
    async with contextlib.AsyncExitStack() as exits:
        holder = await exits.enter_async_context(s.upstreams.stream(s.call(LONG, "holder")))
        reader = asyncio.create_task(read_all(holder, reading))
        queued = asyncio.create_task(s.upstreams.fetch(s.call("hi", "queued", stream=False)))
        while s.pools.queue(s.entry).waiting == 0:
            await asyncio.sleep(0.01)
        s.drain.interrupt()
        with pytest.raises(ServerShuttingDown):
            await queued
        with pytest.raises(ServerShuttingDown):
            await reader
    assert a.served("queued") == []  # never reached the engine
    assert s.unharmed()


async def test_a_non_streamed_answer_is_cut_short(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, _ = fakes
    a.forced = {"first_token_delay": "2"}  # longer than the test takes
    s = Setup(client, a.url)
    task = asyncio.create_task(s.upstreams.fetch(s.call("hi", "fetch-1", stream=False)))
    while not a.served("fetch-1"):
        await asyncio.sleep(0.01)
    s.drain.interrupt()
    with pytest.raises(ServerShuttingDown) as info:
        await task
    assert (info.value.status_code, info.value.code) == (503, "server_shutting_down")
    assert s.unharmed()


async def test_nothing_new_reaches_an_engine_after_the_deadline(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, _ = fakes
    s = Setup(client, a.url)
    s.drain.interrupt()
    with pytest.raises(ServerShuttingDown):
        async with s.upstreams.stream(s.call("hi", "late-1")):
            pass
    assert a.served("late-1") == [] and s.unharmed()

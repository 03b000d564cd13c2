"""The drain (shutdown.py) on its own: the budget, flights cut short at the deadline, the
deadline from an injected clock, the SIGTERM hand-over to the server's handler, and the
refusal of new requests while draining."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from types import FrameType
from typing import cast

import aiohttp
import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from chatgate.middleware import DrainGuard
from chatgate.shutdown import (
    SHUTTING_DOWN,
    Drain,
    ServerShuttingDown,
    ShutdownBudget,
    SigtermDrain,
)
from tests.helpers import FakeClock


def drain_of(grace: float = 10.0, clock: FakeClock | None = None) -> Drain:
    return Drain(ShutdownBudget(grace), clock or FakeClock())


class FakeResponse:
    """What the drain does to a handed-over stream's response: close it."""

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


def response() -> tuple[FakeResponse, aiohttp.ClientResponse]:
    fake = FakeResponse()
    return fake, cast(aiohttp.ClientResponse, fake)


@pytest.mark.parametrize("grace", [1.0, 10.0, 30.0, 120.0])
def test_budget_spends_the_margin_within_the_grace(grace: float) -> None:
    budget = ShutdownBudget(grace)
    assert budget.margin == min(5.0, grace / 4)
    assert budget.deadline == grace - budget.margin
    after_deadline = budget.settle + budget.server_seconds + budget.lifespan_seconds
    assert after_deadline < budget.margin  # a tenth is left for closing the rest
    assert budget.deadline + after_deadline < grace


def test_budget_of_ten_seconds() -> None:
    budget = ShutdownBudget(10.0)
    assert (budget.margin, budget.deadline) == (2.5, 7.5)


async def test_interrupt_ends_a_wait_with_server_shutting_down() -> None:
    drain = drain_of()
    entered, never = asyncio.Event(), asyncio.Event()

    async def queued() -> None:
        with drain.track() as flight:
            async with flight.interruptible():
                entered.set()
                await never.wait()  # a queue wait, a connect, a non-streamed read

    task = asyncio.create_task(queued())
    await entered.wait()
    assert drain.in_flight == 1
    drain.interrupt()
    with pytest.raises(ServerShuttingDown) as caught:
        await task
    assert (caught.value.code, caught.value.status_code) == (SHUTTING_DOWN, 503)
    assert drain.in_flight == 0


async def test_a_client_that_leaves_is_still_a_cancellation() -> None:
    drain = drain_of()
    entered = asyncio.Event()

    async def queued() -> None:
        with drain.track() as flight:
            async with flight.interruptible():
                entered.set()
                await asyncio.Event().wait()

    task = asyncio.create_task(queued())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert drain.in_flight == 0 and not drain.draining


async def test_interrupt_closes_a_held_response() -> None:
    drain = drain_of()
    fake, held = response()
    with drain.track() as flight:
        async with flight.interruptible():
            pass  # opened: the stream is handed over
        flight.hold(held)
        drain.interrupt()
        drain.interrupt()  # idempotent
        assert fake.closed == 1 and flight.interrupted


async def test_nothing_starts_after_the_deadline() -> None:
    drain = drain_of()
    drain.interrupt()
    with pytest.raises(ServerShuttingDown):
        with drain.track():
            pass
    assert drain.in_flight == 0


async def test_a_response_held_after_the_interrupt_is_closed_at_once() -> None:
    drain = drain_of()
    fake, held = response()
    with drain.track() as flight:
        drain.interrupt()
        flight.hold(held)
    assert fake.closed == 1


async def test_run_returns_when_the_streams_end_before_the_deadline() -> None:
    clock = FakeClock()
    drain = drain_of(clock=clock)
    finish = asyncio.Event()
    started = asyncio.Event()

    async def stream() -> None:
        with drain.track():
            started.set()
            await finish.wait()

    task = asyncio.create_task(stream())
    await started.wait()
    running = asyncio.create_task(drain.run())
    await asyncio.sleep(0)  # run() is waiting now; the clock has not moved
    assert drain.draining and drain.remaining() == 7.5
    finish.set()
    await running
    await task
    assert not drain.interrupted


async def test_run_cuts_short_what_runs_past_the_deadline() -> None:
    clock = FakeClock()
    drain = drain_of(clock=clock)
    fake, held = response()
    started = asyncio.Event()
    ended = asyncio.Event()

    async def stream() -> None:
        with drain.track() as flight:
            flight.hold(held)
            started.set()
            await ended.wait()  # the engine read, which fails once the response closes

    task = asyncio.create_task(stream())
    await started.wait()
    drain.begin()
    clock.now += drain.budget.deadline  # the deadline has come
    running = asyncio.create_task(drain.run())
    while not fake.closed:
        await asyncio.sleep(0)
    ended.set()
    await running
    await task
    assert drain.interrupted and drain.in_flight == 0


async def test_run_with_nothing_in_flight_returns_at_once() -> None:
    drain = drain_of()
    await drain.run()
    assert drain.draining and not drain.interrupted


class Handlers:
    """Stand-ins for uvicorn's signal handler: record what reached them."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.reached = asyncio.Event()

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.calls.append(signum)
        self.reached.set()


@pytest.fixture
def server_handlers() -> Iterator[Handlers]:
    handlers = Handlers()
    saved = {sig: signal.signal(sig, handlers) for sig in SigtermDrain.SIGNALS}
    yield handlers
    for sig, handler in saved.items():
        signal.signal(sig, handler)


async def test_first_sigterm_drains_before_the_server_hears_of_it(
    server_handlers: Handlers,
) -> None:
    drain = drain_of()
    hook = SigtermDrain(drain, asyncio.get_running_loop())
    assert hook.install()
    release = asyncio.Event()
    started = asyncio.Event()

    async def stream() -> None:
        with drain.track():
            started.set()
            await release.wait()

    task = asyncio.create_task(stream())
    await started.wait()
    try:
        signal.raise_signal(signal.SIGTERM)
        while not drain.draining:
            await asyncio.sleep(0)
        assert server_handlers.calls == []  # still serving the stream
        release.set()
        await task
        await server_handlers.reached.wait()
        assert server_handlers.calls == [signal.SIGTERM]
    finally:
        hook.uninstall()
    assert signal.getsignal(signal.SIGTERM) is server_handlers


async def test_sigint_or_a_second_sigterm_passes_on_at_once(server_handlers: Handlers) -> None:
    drain = drain_of()
    hook = SigtermDrain(drain, asyncio.get_running_loop())
    assert hook.install()
    try:
        signal.raise_signal(signal.SIGINT)
        assert server_handlers.calls == [signal.SIGINT]
        await asyncio.sleep(0)  # the interrupt scheduled on the loop
        assert drain.interrupted
        server_handlers.reached.clear()
        signal.raise_signal(signal.SIGTERM)  # the first SIGTERM: drains (nothing in flight)
        await server_handlers.reached.wait()
        signal.raise_signal(signal.SIGTERM)
        assert server_handlers.calls[-1] == signal.SIGTERM
    finally:
        hook.uninstall()


async def test_no_takeover_without_a_server_handler() -> None:
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        hook = SigtermDrain(drain_of(), asyncio.get_running_loop())
        assert not hook.install()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/metrics"])
async def test_probes_are_served_while_draining(path: str) -> None:
    drain = drain_of()
    drain.begin()
    transport = httpx.ASGITransport(app=DrainGuard(_app, drain))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get(path)).text == "served"


async def test_new_requests_are_refused_while_draining() -> None:
    drain = drain_of()
    transport = httpx.ASGITransport(app=DrainGuard(_app, drain))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.post("/v1/chat/completions")).status_code == 200
        drain.begin()
        refused = await client.post("/v1/chat/completions")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == SHUTTING_DOWN
    assert refused.headers["retry-after"] == "5"
    assert refused.headers["connection"] == "close"


async def test_a_refusal_reads_the_request_body_before_closing_the_connection() -> None:
    """Answering with Connection: close while the body is still unread makes the kernel
    reset the connection, and the client may lose the 503 (seen as a read error)."""
    drain = drain_of()
    drain.begin()
    chunks = [b'{"model": ', b'"m"}', b""]
    received: list[bytes] = []

    async def receive() -> Message:
        chunk = chunks.pop(0)
        received.append(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            assert not chunks, "answered before the body was read"
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}
    await DrainGuard(_app, drain)(scope, receive, send)
    assert received == [b'{"model": ', b'"m"}', b""]
    assert sent[0]["status"] == 503

"""Failover before the first token, against fake engines: which failures move a request
to another replica, which do not, what the replicas' accounting says afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from chatgate.engines.admission.pool import Ticket
from chatgate.engines.upstream.client import EngineClient, EngineError
from chatgate.engines.upstream.endpoint import Endpoint, Timeouts
from chatgate.engines.upstream.failover import (
    MAX_ATTEMPTS,
    EngineCall,
    Upstream,
    Upstreams,
    starts_answer,
)
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.observability.metrics import Metrics
from tests.fakes.upstream import FakeUpstream
from tests.helpers import free_port

PATH = "/chat/completions"


@pytest_asyncio.fixture
async def client() -> AsyncIterator[EngineClient]:
    c = EngineClient(Timeouts(connect=1.0, first_token=1.0, idle=1.0))
    await c.start()
    yield c
    await c.close()


def endpoint(url: str, name: str) -> Endpoint:
    return Endpoint(name=name, base_url=url + "/v1", upstream_model=f"{name}-model")


class Setup:
    def __init__(self, client: EngineClient, *urls: str) -> None:
        self.endpoints = [endpoint(url, f"e{i}") for i, url in enumerate(urls)]
        self.registry = ModelRegistry("m", circuit_failures=2, circuit_open_seconds=60)
        self.entry = ModelEntry(id="m", name="M", endpoints=self.endpoints)
        self.registry.add(self.entry)
        self.metrics = Metrics()
        self.attempts: list[str] = []
        self.upstreams = Upstreams(self.registry, client, self.metrics)
        self.exits = contextlib.AsyncExitStack()  # the open streams' owners

    def payload(self, content: str, stream: bool = True) -> dict[str, object]:
        return {"messages": [{"role": "user", "content": content}], "stream": stream}

    def call(self, content: str, request_id: str = "r1", stream: bool = True) -> EngineCall:
        call = EngineCall(self.entry, PATH, self.payload(content, stream), request_id,
                          Ticket("user:1"))  # fmt: skip
        self.attempts = call.tried
        return call

    async def stream(self, content: str, request_id: str = "r1") -> Upstream:
        """An open stream; ``done()`` leaves its owner as a route would."""
        return await self.exits.enter_async_context(
            self.upstreams.stream(self.call(content, request_id))
        )

    async def done(self) -> None:
        await self.exits.aclose()

    def failovers(self) -> float | None:
        return self.metrics.registry.get_sample_value(
            "chatgate_engine_failovers_total", {"model": "m"}
        )


async def text_of(upstream: Upstream) -> str:
    parts = []
    async for line in upstream.lines():
        if line.startswith(b"data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                parts.append(choice["delta"].get("content") or "")
    return "".join(parts)


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


async def test_a_refused_connection_fails_over(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    _, b = fakes
    s = Setup(client, dead_url(), b.url)
    upstream = await s.stream("hi")
    assert upstream.endpoint.name == "e1" and s.attempts == ["e0", "e1"]
    dead, alive = s.endpoints
    assert dead.outstanding == 0 and alive.outstanding == 1
    assert await text_of(upstream) == "Paris is the capital of France."
    await s.done()
    assert alive.outstanding == 0 and upstream.completed
    assert b.requests[-1].payload["model"] == "e1-model"  # each replica's own model name
    assert dead.breaker.consecutive_failures == 1 and dead.last_error
    assert s.failovers() == 1
    failures = s.metrics.registry.get_sample_value(
        "chatgate_engine_failures_total", {"engine": "e0", "reason": "engine_unavailable"}
    )
    assert failures == 1


@pytest.mark.parametrize(
    "forced",
    [
        {"status": "500"},  # 5xx before any header
        {"status": "503"},
        {"reset": "1"},  # connection dropped before any header
        {"role_first": "1", "crash_after": "0"},  # died after the role chunk, before content
        {"crash_after": "0"},  # headers, then nothing
    ],
)
async def test_failures_before_the_first_content_fail_over(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream], forced: dict[str, str]
) -> None:
    a, b = fakes
    a.forced = forced
    s = Setup(client, a.url, b.url)
    upstream = await s.stream("[[role_first]] hi")
    assert upstream.endpoint.name == "e1"
    # A connection dropped before any answer is retried once on a fresh connection (it may
    # have been a stale keep-alive one), then the request fails over.
    assert len(a.requests) == (2 if "reset" in forced else 1) and len(b.requests) == 1
    assert await text_of(upstream) == "Paris is the capital of France."  # nothing twice
    await s.done()
    assert s.endpoints[0].outstanding == 0 and s.endpoints[1].outstanding == 0
    assert s.endpoints[0].breaker.consecutive_failures == 1


async def test_the_stream_is_handed_over_at_its_first_content(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, _ = fakes
    s = Setup(client, a.url)
    upstream = await s.stream("[[role_first chunks=3 delay=0.05]]")
    assert len(upstream.head) == 2  # the role chunk, then the first word
    assert a.requests[-1].chunks_sent <= 2  # not read to the end first
    assert await text_of(upstream) == "Paris is the"
    await s.done()
    assert s.endpoints[0].breaker.consecutive_failures == 0


async def test_a_crash_after_the_first_content_is_not_retried(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, b = fakes
    a.forced = {"crash_after": "2", "delay": "0.02"}
    s = Setup(client, a.url, b.url)
    upstream = await s.stream("hi")
    assert upstream.endpoint.name == "e0"
    with pytest.raises(EngineError) as info:
        await text_of(upstream)
    assert info.value.code == "engine_disconnected"
    assert b.requests == []
    await s.done()  # the owner reports the mid-stream failure on the way out
    assert s.endpoints[0].breaker.consecutive_failures == 1
    assert s.endpoints[0].outstanding == 0


@pytest.mark.parametrize("status", ["400", "422", "404"])
async def test_the_clients_or_configurations_fault_is_not_retried(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream], status: str
) -> None:
    a, b = fakes
    a.forced = {"status": status}
    s = Setup(client, a.url, b.url)
    with pytest.raises(EngineError) as info:
        await s.stream("hi")
    assert info.value.code in ("engine_rejected", "engine_misconfigured")
    assert info.value.engine == "e0" and b.requests == []
    assert s.endpoints[0].breaker.consecutive_failures == 0 and s.endpoints[0].healthy
    assert s.endpoints[0].outstanding == 0


async def test_when_every_replica_fails_the_last_error_is_raised(client: EngineClient) -> None:
    s = Setup(client, *(dead_url() for _ in range(MAX_ATTEMPTS + 1)))
    with pytest.raises(EngineError) as info:
        await s.stream("hi")
    assert info.value.code == "engine_unavailable"
    assert len(s.attempts) == MAX_ATTEMPTS, "attempts are capped"
    assert info.value.engine == s.attempts[-1]
    assert all(ep.outstanding == 0 for ep in s.endpoints)


async def test_open_circuits_are_not_tried_at_all(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    _, b = fakes
    s = Setup(client, dead_url(), b.url)
    for request_id in ("r1", "r2"):
        upstream = await s.stream("hi", request_id)
        await text_of(upstream)
    dead = s.endpoints[0]
    assert dead.breaker.state(s.registry.clock()) == "open" and not dead.healthy
    await text_of(await s.stream("hi", "r3"))
    assert s.attempts == ["e1"]
    await s.done()


async def test_a_single_replica_with_an_open_circuit_is_503(client: EngineClient) -> None:
    s = Setup(client, dead_url())
    for _ in range(2):
        with pytest.raises(EngineError):
            await s.stream("hi")
    with pytest.raises(APIError) as info:
        await s.stream("hi")
    assert (info.value.status_code, info.value.code) == (503, "engine_unavailable")


async def test_non_streamed_answers_fail_over_too(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, b = fakes
    a.forced = {"status": "502"}
    s = Setup(client, a.url, b.url)
    call = s.call("hi", stream=False)
    data = await s.upstreams.fetch(call)
    assert call.engine == "e1" and call.tried == ["e0", "e1"] and data["model"] == "engine-b"
    assert all(ep.outstanding == 0 for ep in s.endpoints)


async def test_cancelled_while_waiting_for_the_engine_aborts_and_uncounts(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, b = fakes
    s = Setup(client, a.url, b.url)
    slow = asyncio.create_task(s.stream("[[first_token_delay=0.5]]"))
    await asyncio.sleep(0.2)
    slow.cancel()  # the client left
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert s.endpoints[0].outstanding == 0
    assert s.endpoints[0].breaker.consecutive_failures == 0, "a client leaving is no failure"
    assert b.requests == [], "and no reason to try elsewhere"


@pytest.mark.parametrize(
    ("line", "commits"),
    [
        (b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}', False),
        (b'data: {"choices":[{"delta":{"role":"assistant"}}]}', False),
        (b'data: {"choices":[{"delta":{"content":"Hi"}}]}', True),
        (b'data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]}', True),
        (b'data: {"choices":[{"delta":{"tool_calls":[{"id":"x"}]}}]}', True),
        (b'data: {"choices":[{"delta":{},"finish_reason":"length"}]}', True),
        (b'data: {"choices":[{"text":"Once"}]}', True),
        (b'data: {"choices":[],"usage":{"prompt_tokens":1}}', True),
        (b'data: {"error":{"message":"boom"}}', True),
        (b"data: [DONE]", True),
        (b": keep-alive", False),
        (b"data: not json", False),
    ],
)
def test_what_commits_a_stream_to_its_replica(line: bytes, commits: bool) -> None:
    assert starts_answer(line) is commits


async def test_a_replica_may_have_its_own_timeouts(
    client: EngineClient, fakes: tuple[FakeUpstream, FakeUpstream]
) -> None:
    a, _ = fakes
    s = Setup(client, a.url)
    await text_of(await s.stream("[[first_token_delay=0.4]]"))  # the client's 1 s: in time
    await s.done()
    s.endpoints[0].timeouts = Timeouts(connect=0.5, first_token=0.2, idle=0.2)
    with pytest.raises(EngineError) as info:
        await s.stream("[[first_token_delay=0.4]]", "r2")
    assert info.value.code == "engine_timeout" and "0.2s" in info.value.message

"""EngineClient (and the engine health probes) against tiny aiohttp servers:
status mapping, the three timeouts, broken streams, SSE line parsing."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from chatgate.engines.upstream.client import (
    DONE_LINE,
    EngineClient,
    EngineError,
    Timeouts,
    engine_request_id,
    parse_data_line,
)
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.health import check_endpoint, discover_upstream_model
from tests.helpers import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PATH = "/chat/completions"
TTFT, IDLE = 0.5, 0.2


@asynccontextmanager
async def engine(handler: Handler, models: Handler | None = None) -> AsyncIterator[Endpoint]:
    """A one-route engine; yields the Endpoint that points at it."""
    app = web.Application()
    app.router.add_post("/v1" + PATH, handler)
    if models is not None:
        app.router.add_get("/v1/models", models)
    runner = web.AppRunner(
        app, handle_signals=False, shutdown_timeout=0.1, handler_cancellation=True
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server  # noqa: SLF001 - the port chosen by the OS
    assert server is not None and server.sockets
    port = server.sockets[0].getsockname()[1]
    try:
        yield Endpoint(name=f"e@{port}", base_url=f"http://127.0.0.1:{port}/v1",
                       upstream_model="m")
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture
async def client() -> AsyncIterator[EngineClient]:
    c = EngineClient(Timeouts(connect=1.0, first_token=TTFT, idle=IDLE))
    await c.start()
    yield c
    await c.close()


async def sse_response(request: web.Request, parts: list[bytes | float]) -> web.StreamResponse:
    """Stream ``parts``: bytes are written, floats are pauses (seconds)."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for part in parts:
        if isinstance(part, float):
            await asyncio.sleep(part)
        else:
            await response.write(part)
    await response.write_eof()
    return response


async def collect(client: EngineClient, response: aiohttp.ClientResponse) -> list[bytes]:
    try:
        return [line async for line in client.lines(response)]
    finally:
        response.close()


async def engine_error(awaitable: Awaitable[Any]) -> EngineError:
    with pytest.raises(EngineError) as info:
        await awaitable
    return info.value


# --------------------------------------------------------------------------- open()


async def test_open_posts_json_with_the_request_id(client: EngineClient) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen["headers"] = dict(request.headers)
        seen["body"] = await request.json()
        return web.json_response({"ok": True})

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {"model": "m", "top_k": 3}, "rid-1")
        try:
            assert response.status == 200
            assert await client.read_json(response) == {"ok": True}
        finally:
            response.release()
    assert seen["body"] == {"model": "m", "top_k": 3}
    # llama.cpp accepts only UUIDs: a client's own id goes as a stable UUID derived from it.
    sent = seen["headers"]["X-Request-ID"]
    assert sent == engine_request_id("rid-1") == engine_request_id("rid-1")
    assert str(uuid.UUID(sent)) == sent
    assert seen["headers"]["Content-Type"] == "application/json"


def test_uuid_request_ids_reach_the_engine_unchanged() -> None:
    rid = uuid.uuid4()
    assert engine_request_id(str(rid)) == str(rid)
    assert engine_request_id(rid.hex) == rid.hex
    assert engine_request_id("a") != engine_request_id("b")


@pytest.mark.parametrize(
    ("status", "body", "code", "client_status", "message"),
    [
        (500, {"error": {"message": "CUDA out of memory"}}, "engine_error", 502,
         "The engine failed: CUDA out of memory"),
        (503, b"", "engine_error", 502, "The engine failed: HTTP 503"),
        (400, {"error": {"message": "too many tokens", "type": "BadRequestError"}},
         "engine_rejected", 400, "too many tokens"),
        (422, {"detail": "bad field"}, "engine_rejected", 422, "bad field"),
        (404, b"no such route", "engine_misconfigured", 502,
         "The engine refused the gateway: no such route"),
        (401, {"error": {"message": "bad engine key"}}, "engine_misconfigured", 502,
         "The engine refused the gateway: bad engine key"),
        (429, {"message": "slow down"}, "engine_rejected", 429, "slow down"),
    ],
)
async def test_upstream_status_is_mapped(
    client: EngineClient,
    status: int,
    body: dict[str, Any] | bytes,
    code: str,
    client_status: int,
    message: str,
) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        if isinstance(body, bytes):
            return web.Response(body=body, status=status)
        return web.json_response(body, status=status)

    async with engine(handler) as endpoint:
        error = await engine_error(client.open(endpoint, PATH, {}, "rid"))
    assert (error.code, error.status_code, error.message) == (code, client_status, message)


async def test_unreachable_engine_is_503(client: EngineClient) -> None:
    endpoint = Endpoint("dead", f"http://127.0.0.1:{free_port()}/v1", "m")
    started = time.monotonic()
    error = await engine_error(client.open(endpoint, PATH, {}, "rid"))
    assert time.monotonic() - started < 1.0
    assert (error.code, error.status_code) == ("engine_unavailable", 503)
    assert "unreachable" in error.message


async def test_headers_later_than_the_first_token_timeout_are_504(client: EngineClient) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.json_response({})

    async with engine(handler) as endpoint:
        started = time.monotonic()
        error = await engine_error(client.open(endpoint, PATH, {}, "rid"))
        elapsed = time.monotonic() - started
    assert (error.code, error.status_code) == ("engine_timeout", 504)
    assert TTFT * 0.9 < elapsed < TTFT + 1.0


# --------------------------------------------------------------------------- lines()


async def test_lines_yields_non_empty_lines_without_line_endings(client: EngineClient) -> None:
    parts: list[bytes | float] = [
        b"data: {\"a\": 1}\n\n",
        b": keep-alive\n\n",
        b"data: {\"b\"",  # a line split across writes
        0.02,
        b": 2}\r\n\r\n",
        b"data: [DONE]\n\n",
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, parts)

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        lines = await collect(client, response)
    assert lines == [b'data: {"a": 1}', b": keep-alive", b'data: {"b": 2}', DONE_LINE]


async def test_line_batches_group_what_arrived_together(client: EngineClient) -> None:
    parts: list[bytes | float] = [
        b"data: 1\n\ndata: 2\n\ndata: 3\n\n",  # one write: one batch
        0.05,
        b"data: 4\n\ndata: ",  # the start of a line waits for its end
        0.05,
        b"5\n\ndata: 6",  # no newline before the end of the stream
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, parts)

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        batches = [batch async for batch in client.line_batches(response)]
        response.release()
    assert batches == [
        [b"data: 1", b"data: 2", b"data: 3"],
        [b"data: 4"],
        [b"data: 5"],
        [b"data: 6"],
    ]


async def test_no_first_line_within_the_ttft_timeout_is_504(client: EngineClient) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, [3.0, b"data: late\n\n"])

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")  # headers come at once
        started = time.monotonic()
        error = await engine_error(collect(client, response))
        elapsed = time.monotonic() - started
    assert (error.code, error.status_code) == ("engine_timeout", 504)
    assert f"{TTFT:g}s" in error.message
    assert TTFT * 0.9 < elapsed < TTFT + 1.0


async def test_the_first_line_may_take_longer_than_the_idle_timeout(
    client: EngineClient,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        # slower than IDLE, faster than TTFT; then steady chunks
        return await sse_response(request, [IDLE + 0.15, b"data: 1\n\n", 0.05, b"data: 2\n\n"])

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        assert await collect(client, response) == [b"data: 1", b"data: 2"]


async def test_silence_after_the_first_line_hits_the_idle_timeout(client: EngineClient) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, [b"data: 1\n\n", 3.0, b"data: 2\n\n"])

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        got: list[bytes] = []
        started = time.monotonic()
        with pytest.raises(EngineError) as info:
            async for line in client.lines(response):
                got.append(line)
                started = time.monotonic()
        elapsed = time.monotonic() - started
        response.close()
    assert got == [b"data: 1"]
    assert (info.value.code, info.value.status_code) == ("engine_timeout", 504)
    assert f"{IDLE:g}s" in info.value.message
    assert IDLE * 0.9 < elapsed < IDLE + 1.0


async def test_a_connection_broken_mid_stream_is_engine_disconnected(
    client: EngineClient,
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\n")
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()
        return response

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        got: list[bytes] = []
        with pytest.raises(EngineError) as info:
            async for line in client.lines(response):
                got.append(line)
        response.close()
    assert got == [b"data: 1"]
    assert (info.value.code, info.value.status_code) == ("engine_disconnected", 502)


async def test_lines_sent_before_a_crash_are_not_lost(client: EngineClient) -> None:
    """The engine dies right after three events, before the gateway got to read them."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\ndata: 2\r\n\r\ndata: 3\n\ndata: partial")
        assert request.transport is not None
        request.transport.abort()
        return response

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        await asyncio.sleep(0.2)  # everything, the crash included, has arrived
        got: list[bytes] = []
        with pytest.raises(EngineError) as info:
            async for line in client.lines(response):
                got.append(line)
        response.close()
    assert got == [b"data: 1", b"data: 2", b"data: 3"]  # the cut-off event is dropped
    assert info.value.code == "engine_disconnected"


async def test_a_large_event_line_is_delivered_whole(client: EngineClient) -> None:
    big = b"data: " + json.dumps({"text": "x" * (2 * 1024 * 1024)}).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, [big + b"\n\n", b"data: [DONE]\n\n"])

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        lines = await collect(client, response)
    assert lines == [big, DONE_LINE]


async def test_an_endless_line_is_a_clear_error(
    client: EngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatgate.engines.upstream import client as client_module
    monkeypatch.setattr(client_module, "MAX_LINE_BYTES", 64 * 1024)

    async def handler(request: web.Request) -> web.StreamResponse:
        return await sse_response(request, [b"data: " + b"y" * (256 * 1024) + b"\n\n"])

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        error = await engine_error(collect(client, response))
    assert (error.code, error.status_code) == ("engine_bad_response", 502)


# --------------------------------------------------------------------------- read_json()


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b""])
async def test_read_json_rejects_non_objects(client: EngineClient, body: bytes) -> None:
    async def handler(_request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type="application/json")

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        try:
            error = await engine_error(client.read_json(response))
        finally:
            response.release()
    assert (error.code, error.status_code) == ("engine_bad_response", 502)


async def test_read_json_times_out_on_a_stalled_body(client: EngineClient) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"partial": ')
        await asyncio.sleep(3)
        return response

    async with engine(handler) as endpoint:
        response = await client.open(endpoint, PATH, {}, "rid")
        try:
            error = await engine_error(client.read_json(response))
        finally:
            response.close()
    assert (error.code, error.status_code) == ("engine_timeout", 504)


async def test_session_requires_start() -> None:
    c = EngineClient(Timeouts(1, 1, 1))
    with pytest.raises(RuntimeError):
        _ = c.session
    await c.close()  # closing an unstarted client is harmless
    await c.start()
    assert not c.session.closed
    await c.close()
    await c.close()


# --------------------------------------------------------------------------- parse_data_line()


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'data: {"a": 1}', {"a": 1}),
        (b'data:{"a": 1}', {"a": 1}),
        (b"data: [DONE]", None),
        (b": comment", None),
        (b"event: message", None),
        (b"data: not json", None),
        (b"data: [1, 2]", None),
        (b'data: "text"', None),
        (b"", None),
        (b'id: 1\ndata: {"a": 1}', None),
    ],
)
def test_parse_data_line(line: bytes, expected: dict[str, Any] | None) -> None:
    assert parse_data_line(line) == expected


# --------------------------------------------------------------------------- health probes


async def _unused(_request: web.Request) -> web.StreamResponse:
    return web.json_response({})


def models_handler(status: int, body: Any) -> Handler:
    async def handler(_request: web.Request) -> web.StreamResponse:
        if isinstance(body, bytes):
            return web.Response(body=body, status=status, content_type="application/json")
        return web.json_response(body, status=status)

    return handler


async def test_check_endpoint_marks_health(client: EngineClient) -> None:
    ok = models_handler(200, {"data": [{"id": "m"}]})
    async with engine(_unused, models=ok) as endpoint:
        endpoint.healthy, endpoint.last_error = False, "old"
        assert await check_endpoint(client, endpoint) is True
        assert (endpoint.healthy, endpoint.last_error) == (True, None)
    async with engine(_unused, models=models_handler(500, {})) as endpoint:
        assert await check_endpoint(client, endpoint) is False
        assert (endpoint.healthy, endpoint.last_error) == (False, "HTTP 500")
    dead = Endpoint("dead", f"http://127.0.0.1:{free_port()}/v1", "m")
    assert await check_endpoint(client, dead) is False
    assert dead.healthy is False
    assert dead.last_error is not None and dead.last_error.startswith("unreachable")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"data": [{"id": "Qwen/Qwen2.5-7B-Instruct"}]}, "Qwen/Qwen2.5-7B-Instruct"),
        (200, {"data": [{"id": "a"}, {"id": "b"}]}, None),
        (200, {"data": []}, None),
        (200, {"data": [{"object": "model"}]}, None),
        (200, [1, 2], None),
        (200, b"not json", None),
        (500, {"data": [{"id": "a"}]}, None),
    ],
)
async def test_discover_upstream_model(
    client: EngineClient, status: int, body: Any, expected: str | None
) -> None:
    async with engine(_unused, models=models_handler(status, body)) as endpoint:
        assert await discover_upstream_model(client, endpoint) == expected


async def test_discover_upstream_model_of_a_dead_engine(client: EngineClient) -> None:
    dead = Endpoint("dead", f"http://127.0.0.1:{free_port()}/v1", "m")
    assert await discover_upstream_model(client, dead) is None

"""The HTTP server's limits (cli/server_limits.py) on a real socket: a request head over
the cap is a 431 that the app never sees, a client that trickles its head is cut off, and
ordinary requests (keep-alive, bodies) are untouched."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
import uvicorn

from chatgate.cli.server_limits import GuardedHttpToolsProtocol, uvicorn_limits
from chatgate.settings import Settings
from tests.helpers import free_port

HEAD_CAP = 16 * 1024
HEAD_TIMEOUT = 0.5


class Recorder:
    """A minimal ASGI app that counts what reached it and echoes the body's length."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        self.paths.append(scope["path"])
        size = 0
        while True:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = str(size).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class Served:
    def __init__(self, app: Recorder, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    async def raw(self, *pieces: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
        return reader, writer


@pytest_asyncio.fixture(scope="module")
async def served() -> AsyncIterator[Served]:
    settings = Settings(max_header_bytes=HEAD_CAP, header_timeout_seconds=HEAD_TIMEOUT)
    async with serve(settings) as running:
        yield running


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Served]:
    app = Recorder()
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", lifespan="off",
        **uvicorn_limits(settings),
    )  # fmt: skip
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    for _ in range(400):
        if server.started or task.done():
            break
        await asyncio.sleep(0.025)
    assert server.started, "uvicorn did not start"
    yield Served(app, port)
    server.should_exit = True
    await asyncio.wait_for(task, 30)


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything until the server closes the connection (bounded)."""
    return await asyncio.wait_for(reader.read(), timeout=HEAD_TIMEOUT * 20)


async def test_a_100_kb_header_is_refused_before_the_app(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
        response = await client.get("/big", headers={"X-Big": "a" * 100_000})
    assert response.status_code == 431
    assert "/big" not in served.app.paths


async def test_many_headers_over_the_cap_are_refused(served: Served) -> None:
    headers = {f"X-Part-{i}": "b" * 1000 for i in range(20)}  # ~20 KB in small lines
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
        response = await client.get("/many", headers=headers)
    assert response.status_code == 431
    assert "/many" not in served.app.paths


async def test_a_header_trickled_past_the_cap_is_refused(served: Served) -> None:
    """One endless header line, sent in pieces: the parser never completes it, the byte
    count of the head stops it."""
    reader, writer = await served.raw(b"GET /trickle HTTP/1.1\r\nHost: x\r\nX-Long: ")
    for _ in range(20):
        writer.write(b"c" * 1024)
        await writer.drain()
    answer = await read_all(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert "/trickle" not in served.app.paths


async def test_ordinary_requests_pass(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
        near_cap = await client.get("/near", headers={"X-Near": "d" * (HEAD_CAP - 1024)})
        big_body = await client.post("/upload", content=b"e" * 1_000_000)
        again = await client.get("/again")  # the same kept-alive connection
    assert near_cap.status_code == 200
    assert big_body.status_code == 200 and big_body.text == "1000000"
    assert again.status_code == 200


async def test_a_slow_head_is_cut_off(served: Served) -> None:
    reader, writer = await served.raw(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
    answer = await read_all(reader)  # never finished: the deadline answers
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert "/slow" not in served.app.paths


async def test_a_silent_connection_is_closed(served: Served) -> None:
    reader, writer = await served.raw()
    assert await read_all(reader) == b""
    writer.close()


async def test_the_deadline_applies_to_each_request_on_a_connection(served: Served) -> None:
    reader, writer = await served.raw(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
    status = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    assert status.startswith(b"HTTP/1.1 200 ")
    assert await asyncio.wait_for(reader.readexactly(1), timeout=10) == b"0"
    writer.write(b"GET /second HTTP/1.1\r\n")  # a second head, never finished
    await writer.drain()
    answer = await read_all(reader)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert "/first" in served.app.paths and "/second" not in served.app.paths


def test_limits_travel_to_worker_processes() -> None:
    """Multi-worker serving pickles uvicorn's config for each spawned worker."""
    settings = Settings(max_header_bytes=1234, header_timeout_seconds=3.0, max_concurrency=10)
    limits = pickle.loads(pickle.dumps(uvicorn_limits(settings)))
    assert limits["http"].func is GuardedHttpToolsProtocol
    assert limits["http"].keywords["limits"].max_bytes == 1234
    assert limits["limit_concurrency"] == 10
    assert limits["h11_max_incomplete_event_size"] == 1234


@pytest.mark.parametrize("value", [None, 100])
def test_the_concurrency_limit_can_be_lifted(value: int | None) -> None:
    assert uvicorn_limits(Settings(max_concurrency=value))["limit_concurrency"] == value


async def test_past_the_concurrency_limit_the_answer_is_a_json_503_with_retry_after() -> None:
    """uvicorn's own answer is plain text without Retry-After; ours is the error shape."""
    settings = Settings(max_concurrency=2, header_timeout_seconds=60)
    async with serve(settings) as running:
        _, idle = await running.raw()  # one connection held open, silent
        async with httpx.AsyncClient(base_url=running.url, timeout=60) as client:
            response = await client.get("/over")
        idle.close()
        await idle.wait_closed()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert error["code"] == "overloaded" and error["type"] == "service_unavailable"
    assert "/over" not in running.app.paths

"""The drain through a running gateway (in-process uvicorn, fake engine, both databases):
while draining, readiness is 503 and new requests are refused; at the deadline a /v1
stream and a web-chat answer end with ``server_shutting_down``, and both are saved and
billed ``interrupted`` (503), never as a client that left. ``tests/e2e/test_shutdown_e2e.py``
does the same to `chatgate serve` with a real SIGTERM."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest_asyncio
from sqlalchemy import select

from chatgate.db.models import Message, RequestLog
from chatgate.shutdown import SHUTTING_DOWN, Drain
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Account, Gateway, SSEEvent, parse_sse, start_gateway, text_of

LONG = "[[chunks=1000 delay=0.05]] Tell me a long story."  # a 50 s answer


@pytest_asyncio.fixture
async def gw(tmp_path: Path, database_url: str, upstream: FakeUpstream) -> AsyncIterator[Gateway]:
    settings = gateway_settings(tmp_path, database_url, upstream)
    async with start_gateway(settings, upstream) as gateway:
        yield gateway


class SSEReader:
    """Events of a streamed response, read as far as a test needs."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_text()
        self._buffer = ""
        self.events: list[SSEEvent] = []

    async def until(self, done: Callable[[list[SSEEvent]], bool]) -> list[SSEEvent]:
        async for piece in self._chunks:
            self._buffer += piece
            blocks, _, self._buffer = self._buffer.rpartition("\n\n")
            if blocks:
                self.events += parse_sse(blocks + "\n\n")
            if done(self.events):
                break
        return self.events

    async def rest(self) -> list[SSEEvent]:
        return await self.until(lambda _events: False)


def has_text(events: list[SSEEvent]) -> bool:
    return bool(text_of(events))


async def usage_row(gw: Gateway, request_id: str) -> RequestLog:
    """Committed before the stream's last event (``UsageWriter.record`` waits for it)."""
    async with gw.state.sessionmaker() as db:
        rows = (
            await db.scalars(select(RequestLog).where(RequestLog.request_id == request_id))
        ).all()
    assert len(rows) == 1, rows
    return rows[0]


async def assert_refused_while_draining(gw: Gateway, account: Account) -> None:
    async with gw.client() as fresh:
        ready = await fresh.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "shutting_down"
        assert (await fresh.get("/health")).status_code == 200
        body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        refused = await fresh.post("/v1/chat/completions", json=body, headers=account.key_headers)
    assert refused.status_code == 503 and refused.headers["retry-after"]
    assert refused.json()["error"]["code"] == SHUTTING_DOWN


async def test_v1_stream_is_cut_short_and_billed_interrupted(gw: Gateway) -> None:
    account = await gw.account()
    drain: Drain = gw.app.state.drain
    body = {"model": "fake-model", "stream": True,
            "messages": [{"role": "user", "content": LONG}]}  # fmt: skip
    async with gw.client() as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers=account.key_headers
        ) as response:
            request_id = response.headers["x-request-id"]
            reader = SSEReader(response)
            await reader.until(has_text)
            drain.begin()
            await assert_refused_while_draining(gw, account)
            drain.interrupt()
            events = await reader.rest()
    assert events[-1].data == "[DONE]"
    assert events[-2].data["error"]["code"] == SHUTTING_DOWN
    row = await usage_row(gw, request_id)
    assert (row.status, row.status_code) == ("interrupted", 503)
    assert row.completion_tokens > 0


async def test_web_chat_answer_is_saved_interrupted_with_its_text(gw: Gateway) -> None:
    account = await gw.account()
    drain: Drain = gw.app.state.drain
    async with gw.client() as client:
        async with client.stream(
            "POST", "/api/chat", json={"message": LONG}, headers=account.headers
        ) as response:
            request_id = response.headers["x-request-id"]
            reader = SSEReader(response)
            await reader.until(has_text)
            drain.begin()
            drain.interrupt()
            events = await reader.rest()
    assert [e.event for e in events[-3:]] == ["usage", "error", "done"]
    assert events[-2].data["error"]["code"] == SHUTTING_DOWN
    assert events[-1].data["status"] == "interrupted"
    async with gw.state.sessionmaker() as db:
        message = await db.get(Message, events[0].data["assistant_message_id"])
    assert message is not None and message.status == "interrupted"
    assert message.content and message.content == text_of(events)
    row = await usage_row(gw, request_id)
    assert (row.status, row.status_code) == ("interrupted", 503)

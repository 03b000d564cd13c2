"""Web chat over two replicas: failover before the first token (answers and titles), no
retry after it, and a conversation that stays on its replica."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.db import migrate
from chatgate.db.models import RequestLog
from tests.conftest import Pair, gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Account, Gateway, SSEEvent, parse_sse, start_gateway, text_of

ANSWER = "Paris is the capital of France."


@pytest_asyncio.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory, pair: Pair) -> AsyncIterator[Gateway]:
    a, b = pair
    tmp = tmp_path_factory.mktemp("chat-pair")
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    engines = [f"fake-model={a.url}", f"fake-model={b.url}"]
    settings = gateway_settings(tmp, url, a, engines=engines, auto_title=True)
    async with start_gateway(settings, a) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh(gw: Gateway, pair: Pair) -> Iterator[None]:
    for endpoint in gw.state.registry.endpoints():
        endpoint.breaker.succeeded()
        endpoint.healthy = True
    yield
    for fake in pair:
        fake.forced = {}


def name_of(fake: FakeUpstream) -> str:
    return f"fake-model@127.0.0.1:{fake.port}"


async def chat(gw: Gateway, account: Account, **body: Any) -> tuple[str, list[SSEEvent]]:
    request_id = f"chat-{uuid.uuid4().hex}"
    headers = {**account.headers, "X-Request-ID": request_id}
    async with gw.client() as http:
        response = await http.post("/api/chat", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return request_id, parse_sse(response.text)


async def row_of(gw: Gateway, request_id: str) -> RequestLog:
    async with gw.state.sessionmaker() as db:
        query = select(RequestLog).where(RequestLog.request_id == request_id)
        (row,) = (await db.scalars(query)).all()
    return row


async def title_of(gw: Gateway, account: Account, conversation_id: str, first: str) -> str:
    async with gw.client() as http:
        for _ in range(100):
            detail = await http.get(
                f"/api/conversations/{conversation_id}", headers=account.headers
            )
            title = str(detail.json()["title"])
            if title != first:
                return title
            await asyncio.sleep(0.05)
    return title


async def test_answer_and_title_come_from_the_healthy_replica(gw: Gateway, pair: Pair) -> None:
    a, b = pair
    a.forced = {"status": "500"}
    account = await gw.account()
    request_id, events = await chat(gw, account, message="Tell me about France")
    assert events[-1].event == "done" and events[-1].data["status"] == "complete"
    assert text_of(events) == ANSWER
    assert "error" not in [e.event for e in events]
    row = await row_of(gw, request_id)
    assert (row.status, row.engine) == ("ok", name_of(b))
    conversation_id = events[0].data["conversation_id"]
    title = await title_of(gw, account, conversation_id, "Tell me about France")
    assert title == "Paris is the capital of France"
    # The title follows its conversation to b (affinity), so the failing a is not asked.
    assert a.served(request_id + "-title") == []
    assert len(b.served(request_id + "-title")) == 1


async def test_a_crash_after_the_first_chunk_is_reported_not_retried(
    gw: Gateway, pair: Pair
) -> None:
    a, b = pair
    a.forced = {"crash_after": "3"}
    account = await gw.account()
    request_id, events = await chat(gw, account, message="go")
    assert [e.event for e in events[-3:]] == ["usage", "error", "done"]
    assert events[-2].data["error"]["code"] == "engine_disconnected"
    assert events[-1].data["status"] == "error"
    assert text_of(events) == "Paris is the"
    assert b.served(request_id) == []
    row = await row_of(gw, request_id)
    assert (row.status, row.engine) == ("error", name_of(a))


async def test_a_conversation_stays_on_its_replica(gw: Gateway, pair: Pair) -> None:
    a, b = pair
    first_endpoint = gw.state.registry.resolve("fake-model").endpoints[0]
    account = await gw.account()
    first_endpoint.outstanding += 5  # a is busy: the conversation starts on b
    try:
        request_id, events = await chat(gw, account, message="first")
    finally:
        first_endpoint.outstanding -= 5
    assert (await row_of(gw, request_id)).engine == name_of(b)
    conversation_id = events[0].data["conversation_id"]
    # Both idle now (a would win a tie), but the conversation's prefix is cached on b.
    request_id, _ = await chat(gw, account, message="second", conversation_id=conversation_id)
    assert (await row_of(gw, request_id)).engine == name_of(b)
    _, other = await chat(gw, account, message="another conversation")
    assert other[-1].data["status"] == "complete"
    assert a.requests, "a new conversation goes to the least-loaded replica"

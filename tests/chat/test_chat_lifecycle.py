"""Detached generations: resume with Last-Event-ID, stop, engine failures, history."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chatgate.db.models import Message, RequestLog
from tests.helpers import Account, Gateway, SSEEvent, parse_sse, text_of


@pytest.fixture(autouse=True)
def _fresh_circuits(gateway: Gateway) -> Iterator[None]:
    """Failures made on purpose here are per request: three tests in a row must not add up
    to an open circuit on the only replica (tests/engines covers the breaker)."""
    yield
    for endpoint in gateway.state.registry.endpoints():
        endpoint.breaker.succeeded()


class EventReader:
    """Reads a live SSE response incrementally: the first N events, then the rest."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.aiter_text()
        self._buffer = ""
        self._taken = 0

    async def take(self, count: int) -> list[SSEEvent]:
        while True:
            complete = self._buffer[: self._buffer.rfind("\n\n") + 2]
            events = parse_sse(complete)
            if len(events) >= self._taken + count:
                taken = events[self._taken : self._taken + count]
                self._taken += count
                return taken
            self._buffer += await anext(self._chunks)

    async def rest(self) -> list[SSEEvent]:
        async for piece in self._chunks:
            self._buffer += piece
        events = parse_sse(self._buffer)[self._taken :]
        self._taken += len(events)
        return events


async def read_events(response: httpx.Response, count: int) -> list[SSEEvent]:
    return await EventReader(response).take(count)


async def assistant_row(gateway: Gateway, message_id: int) -> Message:
    async with gateway.state.sessionmaker() as db:
        row = await db.get(Message, message_id)
    assert row is not None
    return row


async def test_reload_mid_generation_resumes_without_duplicates(gateway: Gateway) -> None:
    account = await gateway.account()
    body = {"message": "long one [[chunks=40 delay=0.02]]"}
    async with gateway.client() as client:
        async with client.stream("POST", "/api/chat", json=body, headers=account.headers) as r:
            first = await read_events(r, 6)  # the "page" goes away mid-answer
    generation_id = first[0].data["generation_id"]
    last_seen = first[-1].id
    assert last_seen == 6
    async with gateway.client() as client:
        resumed = await client.get(
            f"/api/chat/{generation_id}/stream",
            headers={**account.headers, "Last-Event-ID": str(last_seen)},
        )
    rest = parse_sse(resumed.text)
    assert rest[0].id == last_seen + 1, "resume must start right after the last seen event"
    ids = [e.id for e in first + rest]
    assert ids == list(range(1, len(ids) + 1)), "no event lost or repeated"
    full = text_of(first + rest)
    assert rest[-1].event == "done" and rest[-1].data["status"] == "complete"
    stored = await assistant_row(gateway, first[0].data["assistant_message_id"])
    assert stored.content == full and full.count("Paris") == 1
    chunks = [e for e in first + rest if e.event == "message" and e.data["choices"][0]["delta"]]
    assert len(chunks) == 40


async def test_resume_with_query_parameter_and_other_users_get_404(gateway: Gateway) -> None:
    owner, intruder = await gateway.account(), await gateway.account()
    events, _ = await gateway.chat(owner, message="hello")
    generation_id = events[0].data["generation_id"]
    async with gateway.client() as client:
        again = await client.get(f"/api/chat/{generation_id}/stream?after=0", headers=owner.headers)
        stolen = await client.get(f"/api/chat/{generation_id}/stream", headers=intruder.headers)
        stop = await client.post(f"/api/chat/{generation_id}/stop", headers=intruder.headers)
    assert [e.id for e in parse_sse(again.text)] == [e.id for e in events]
    assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "generation_not_found"
    assert stop.status_code == 404


async def test_stop_ends_generation_aborts_engine_and_saves_partial(gateway: Gateway) -> None:
    account = await gateway.account()
    body = {"message": "stop me [[chunks=300 delay=0.02]]"}
    async with gateway.client() as client:
        async with client.stream("POST", "/api/chat", json=body, headers=account.headers) as r:
            reader = EventReader(r)
            first = await reader.take(5)
            generation_id = first[0].data["generation_id"]
            stop = await client.post(f"/api/chat/{generation_id}/stop", headers=account.headers)
            assert stop.json() == {"generation_id": generation_id, "stopped": True}
            rest = await reader.rest()
    events = first + rest
    assert events[-1].event == "done" and events[-1].data["status"] == "interrupted"
    record = next(
        rec for rec in gateway.upstream.requests if "stop me" in str(rec.payload.get("messages"))
    )
    await wait_for(lambda: record.aborted_at is not None, 2.0)
    assert record.chunks_sent < 300
    stored = await assistant_row(gateway, first[0].data["assistant_message_id"])
    assert stored.status == "interrupted"
    assert stored.content == text_of(events) and stored.content.startswith("Paris")
    async with gateway.state.sessionmaker() as db:
        usage = await db.scalar(select(RequestLog).where(RequestLog.user_id == account.user_id))
    assert usage is not None and usage.status == "interrupted"


async def test_engine_crash_mid_stream_sends_error_and_keeps_partial(gateway: Gateway) -> None:
    account = await gateway.account()
    events, _ = await gateway.chat(account, message="crash [[chunks=20 crash_after=4]]")
    kinds = [e.event for e in events]
    assert kinds[-3:] == ["usage", "error", "done"]
    assert events[-1].data["status"] == "error"
    assert events[-2].data["error"]["code"] == "engine_disconnected"
    stored = await assistant_row(gateway, events[0].data["assistant_message_id"])
    assert stored.status == "error"
    assert stored.content == "Paris is the capital" == text_of(events)


async def test_slow_first_token_times_out_with_error_event(gateway: Gateway) -> None:
    account = await gateway.account()
    events, _ = await gateway.chat(account, message="slow [[first_token_delay=5]]")
    assert events[-2].event == "error"
    assert events[-2].data["error"]["code"] == "engine_timeout"
    stored = await assistant_row(gateway, events[0].data["assistant_message_id"])
    assert stored.status == "error" and stored.content == ""


async def test_engine_http_error_is_reported(gateway: Gateway) -> None:
    account = await gateway.account()
    events, _ = await gateway.chat(account, message="boom [[status=500]]")
    assert events[-2].event == "error" and "fake failure 500" in events[-2].data["error"]["message"]
    assert events[-1].data["status"] == "error"


async def test_follow_up_sends_history_and_system_prompt(gateway: Gateway) -> None:
    account = await gateway.account()
    first, _ = await gateway.chat(account, message="first question", system_prompt="Be brief.")
    conversation_id = first[0].data["conversation_id"]
    second, _ = await gateway.chat(
        account, conversation_id=conversation_id, message="second [[echo]]", temperature=0.3
    )
    sent: dict[str, Any] = __import__("json").loads(text_of(second))
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "Paris is the capital of France."},
        {"role": "user", "content": "second [[echo]]"},
    ]
    assert sent["temperature"] == 0.3 and sent["model"] == "fake-model"
    assert sent["stream_options"] == {"include_usage": True}


async def test_user_defaults_apply_and_request_overrides(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        patched = await client.patch(
            "/api/users/me/settings",
            json={"system_prompt": "You are terse.", "temperature": 0.1, "max_tokens": 64},
            headers=account.headers,
        )
        assert patched.status_code == 200
        login = await client.post(
            "/api/auth/login",
            json={"username": account.username, "password": "correct-horse-battery"},
        )
    fresh = Account(account.user_id, account.username, login.json()["access_token"], "")
    events, _ = await gateway.chat(fresh, message="[[echo]]", max_tokens=32)
    sent = __import__("json").loads(text_of(events))
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent["temperature"] == 0.1 and sent["max_tokens"] == 32


async def test_second_chat_while_running_is_rejected(gateway: Gateway) -> None:
    account = await gateway.account()
    body = {"message": "busy [[chunks=100 delay=0.02]]"}
    async with gateway.client() as client:
        async with client.stream("POST", "/api/chat", json=body, headers=account.headers) as r:
            first = await read_events(r, 3)
            ids = first[0].data
            clash = await client.post(
                "/api/chat",
                json={"conversation_id": ids["conversation_id"], "message": "again"},
                headers=account.headers,
            )
            detail = await client.get(
                f"/api/conversations/{ids['conversation_id']}", headers=account.headers
            )
            await client.post(f"/api/chat/{ids['generation_id']}/stop", headers=account.headers)
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "generation_running"
    assert detail.json()["active_generation_id"] == ids["generation_id"]


async def test_request_validation_and_caps(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        both = await client.post(
            "/api/chat",
            json={"message": "a", "messages": [{"role": "user", "content": "b"}]},
            headers=account.headers,
        )
        too_many = await client.post(
            "/api/chat", json={"message": "a", "max_tokens": 10**6}, headers=account.headers
        )
        unknown_model = await client.post(
            "/api/chat", json={"message": "a", "model": "nope"}, headers=account.headers
        )
        anonymous = await client.post("/api/chat", json={"message": "a"})
    assert both.status_code == 400 and both.json()["error"]["type"] == "invalid_request_error"
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "max_tokens_too_large"
    assert unknown_model.status_code == 404
    assert anonymous.status_code == 401


async def test_messages_list_creates_conversation_with_history(gateway: Gateway) -> None:
    account = await gateway.account()
    messages = [
        {"role": "system", "content": "Seed system"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "what now?"},
    ]
    events, _ = await gateway.chat(account, messages=messages)
    async with gateway.client() as client:
        detail = await client.get(
            f"/api/conversations/{events[0].data['conversation_id']}", headers=account.headers
        )
    body = detail.json()
    assert body["system_prompt"] == "Seed system"
    assert [m["content"] for m in body["messages"]] == [
        "hi",
        "hello",
        "what now?",
        "Paris is the capital of France.",
    ]


async def wait_for(condition: Any, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)

"""``/v1/messages`` over real HTTP in front of the fake engine: the answer's shape, the
event order, tool calls, auth through ``x-api-key``, errors in Anthropic's shape, limits
and the one usage row per request."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.db.models import RequestLog
from chatgate.limits import admin
from tests.helpers import Account, Gateway, parse_sse

pytestmark = pytest.mark.timeout(60)

ANSWER = "Paris is the capital of France."
WEATHER = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def body(content: str = "Capital of France?", **extra: Any) -> dict[str, Any]:
    return {
        "model": "fake-model",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def anthropic_headers(account: Account, request_id: str) -> dict[str, str]:
    return {
        "x-api-key": account.api_key,
        "anthropic-version": "2023-06-01",
        "X-Request-ID": request_id,
    }


async def post(
    gateway: Gateway, path: str, payload: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    async with gateway.client() as client:
        return await client.post(path, json=payload, headers=headers)


async def rows(gateway: Gateway, request_id: str) -> list[RequestLog]:
    async with gateway.state.sessionmaker() as db:
        found = await db.scalars(select(RequestLog).where(RequestLog.request_id == request_id))
        return list(found.all())


@pytest_asyncio.fixture
async def account(gateway: Gateway, fast_passwords: None) -> Account:
    return await gateway.account()


def rid() -> str:
    return f"a-{uuid.uuid4().hex}"


async def test_message_with_x_api_key(gateway: Gateway, account: Account) -> None:
    request_id = rid()
    response = await post(
        gateway,
        "/v1/messages",
        body(system="Answer briefly."),
        anthropic_headers(account, request_id),
    )
    assert response.status_code == 200, response.text
    message = response.json()
    assert message["id"].startswith("msg_") and message["type"] == "message"
    assert (message["role"], message["model"]) == ("assistant", "fake-model")
    assert message["content"] == [{"type": "text", "text": ANSWER}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("end_turn", None)
    [row] = await rows(gateway, request_id)
    assert (row.route, row.status, row.status_code, row.user_id) == (
        "v1.messages", "ok", 200, account.user_id,
    )  # fmt: skip
    assert message["usage"] == {
        "input_tokens": row.prompt_tokens,
        "output_tokens": row.completion_tokens,
    }
    assert row.completion_tokens == 7  # the engine's count, not an estimate
    sent = gateway.upstream.by_request_id(request_id).payload
    assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert sent["stream"] is True and sent["max_tokens"] == 64
    assert sent["stream_options"] == {"include_usage": True}


async def test_bearer_token_works_too(gateway: Gateway, account: Account) -> None:
    headers = {"Authorization": f"Bearer {account.api_key}"}
    response = await post(gateway, "/v1/messages", body(), headers)
    assert response.status_code == 200, response.text


async def test_stream_event_order(gateway: Gateway, account: Account) -> None:
    request_id = rid()
    response = await post(
        gateway, "/v1/messages", body(stream=True), anthropic_headers(account, request_id)
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    names = [event.event for event in events]
    assert names == [
        "message_start", "ping", "content_block_start",
        *["content_block_delta"] * 7,
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert all(event.data["type"] == event.event for event in events)
    assert events[0].data["message"]["content"] == []
    text = "".join(e.data["delta"]["text"] for e in events if e.event == "content_block_delta")
    assert text == ANSWER
    [row] = await rows(gateway, request_id)
    assert events[-2].data["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2].data["usage"] == {
        "input_tokens": row.prompt_tokens,
        "output_tokens": row.completion_tokens,
    }
    assert (row.route, row.status) == ("v1.messages", "ok")


async def test_stream_without_a_finish_is_an_error(gateway: Gateway, account: Account) -> None:
    response = await post(
        gateway, "/v1/messages", body("[[no_finish]]"), anthropic_headers(account, rid())
    )
    # no finish_reason from the engine: a broken stream, not an answer
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "api_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_round_trip(gateway: Gateway, account: Account, stream: bool) -> None:
    request_id = rid()
    first = body("Weather in Paris? [[tool_call=get_weather]]", tools=[WEATHER], stream=stream)
    first["tool_choice"] = {"type": "any"}
    response = await post(gateway, "/v1/messages", first, anthropic_headers(account, request_id))
    assert response.status_code == 200, response.text
    if stream:
        events = parse_sse(response.text)
        starts = [e.data["content_block"] for e in events if e.event == "content_block_start"]
        assert starts == [{"type": "tool_use", "id": "call_fake1", "name": "get_weather",
                           "input": {}}]  # fmt: skip
        deltas = [e.data["delta"] for e in events if e.event == "content_block_delta"]
        assert {d["type"] for d in deltas} == {"input_json_delta"}
        assert "".join(d["partial_json"] for d in deltas) == '{"city": "Paris"}'
        assert events[-2].data["delta"]["stop_reason"] == "tool_use"
    else:
        message = response.json()
        call = {"type": "tool_use", "id": "call_fake1", "name": "get_weather"}
        assert message["content"] == [{**call, "input": {"city": "Paris"}}]
        assert message["stop_reason"] == "tool_use"
    assert gateway.upstream.by_request_id(request_id).payload["tool_choice"] == "required"
    # The client runs the tool and sends the result back.
    second = body(tools=[WEATHER])
    second["messages"] += [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "call_fake1",
                                           "name": "get_weather", "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_fake1",
                                      "content": "18 C"}]},
    ]  # fmt: skip
    request_id = rid()
    response = await post(gateway, "/v1/messages", second, anthropic_headers(account, request_id))
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["type"] == "text"
    sent = gateway.upstream.by_request_id(request_id).payload["messages"]
    assert sent[1]["tool_calls"][0]["function"] == {
        "name": "get_weather", "arguments": '{"city":"Paris"}',
    }  # fmt: skip
    assert sent[2] == {"role": "tool", "tool_call_id": "call_fake1", "content": "18 C"}


@pytest.mark.parametrize(
    ("headers", "kind"),
    [
        ({}, "authentication_error"),
        ({"x-api-key": "sk-cg-not-a-real-key-000000000000"}, "authentication_error"),
    ],
)
async def test_auth_errors(gateway: Gateway, headers: dict[str, str], kind: str) -> None:
    response = await post(gateway, "/v1/messages", body(), headers)
    assert response.status_code == 401
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == kind
    assert set(error["error"]) == {"type", "message"}


async def test_invalid_body_is_rejected_with_a_row(gateway: Gateway, account: Account) -> None:
    request_id = rid()
    payload = body()
    del payload["max_tokens"]
    response = await post(gateway, "/v1/messages", payload, anthropic_headers(account, request_id))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and "max_tokens" in error["message"]
    [row] = await rows(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.messages", "rejected", 400)


async def test_not_json_and_unknown_model(gateway: Gateway, account: Account) -> None:
    headers = anthropic_headers(account, rid())
    async with gateway.client() as client:
        broken = await client.post("/v1/messages", content=b"{", headers=headers)
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    unknown = await post(gateway, "/v1/messages", {**body(), "model": "claude-x"}, headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["type"] == "not_found_error"


async def test_engine_failure_before_and_during_the_stream(
    gateway: Gateway, account: Account
) -> None:
    request_id = rid()
    failed = await post(
        gateway, "/v1/messages", body("[[status=500]]"), anthropic_headers(account, request_id)
    )
    assert failed.status_code == 502
    assert failed.json()["error"]["type"] == "api_error"
    [row] = await rows(gateway, request_id)
    assert (row.status, row.status_code) == ("error", 502)
    request_id = rid()
    broken = await post(
        gateway, "/v1/messages", body("[[crash_after=3]]", stream=True),
        anthropic_headers(account, request_id),
    )  # fmt: skip
    events = parse_sse(broken.text)
    assert [e.event for e in events][:3] == ["message_start", "ping", "content_block_start"]
    assert events[-1].event == "error" and events[-1].data["type"] == "error"
    assert events[-1].data["error"]["type"] == "api_error"
    [row] = await rows(gateway, request_id)
    assert (row.route, row.status, row.completion_tokens) == ("v1.messages", "error", 3)


async def test_rate_limit_is_429_with_retry_after(gateway: Gateway, account: Account) -> None:
    async with gateway.client() as client:
        listed = (await client.get("/api/keys", headers=account.headers)).json()["keys"]
    async with gateway.state.sessionmaker() as db:
        await admin.set_key_limits(db, int(listed[0]["id"]), {"requests_per_minute": 1})
    first = await post(gateway, "/v1/messages", body(), anthropic_headers(account, rid()))
    second = await post(gateway, "/v1/messages", body(), anthropic_headers(account, rid()))
    assert first.status_code == 200 and first.headers["X-RateLimit-Limit"] == "1"
    assert second.status_code == 429
    assert second.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(second.headers["Retry-After"]) <= 60


async def test_count_tokens_engine_or_estimate(gateway: Gateway, account: Account) -> None:
    payload = {k: v for k, v in body("one two three").items() if k != "max_tokens"}
    headers = anthropic_headers(account, rid())
    estimated = await post(gateway, "/v1/messages/count_tokens", payload, headers)
    assert estimated.status_code == 200, estimated.text
    assert estimated.headers["x-token-count-source"] == "estimate"
    assert estimated.json()["input_tokens"] > 0
    gateway.upstream.tokenize = True
    try:
        counted = await post(gateway, "/v1/messages/count_tokens", payload, headers)
    finally:
        gateway.upstream.tokenize = False
    assert counted.headers["x-token-count-source"] == "engine"
    assert counted.json() == {"input_tokens": 3}  # the fake's tokenizer: one per word
    missing = await post(gateway, "/v1/messages/count_tokens", {"model": "fake-model"}, headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"


async def test_client_leaving_mid_stream_aborts_the_engine(
    gateway: Gateway, account: Account
) -> None:
    request_id = rid()
    payload = body("[[chunks=200 delay=0.02]]", stream=True)
    async with gateway.client() as client:
        async with client.stream(
            "POST", "/v1/messages", json=payload, headers=anthropic_headers(account, request_id)
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("event: content_block_delta"):
                    break  # the client goes away after its first text
    await eventually(lambda: gateway.upstream.by_request_id(request_id).aborted_at)
    [row] = await eventually(lambda: rows(gateway, request_id))
    assert (row.route, row.status, row.status_code) == ("v1.messages", "cancelled", 499)
    assert row.completion_tokens < 200


async def eventually(probe: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``probe`` (sync or async) until it returns something truthy, bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)

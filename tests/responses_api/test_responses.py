"""``/v1/responses`` over real HTTP in front of the fake engine: the response object and
the event stream (checked against the openai SDK's types), tools, the
``previous_response_id`` chain, ownership, ``store: false``, retention, errors and the
one usage row per request."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import httpx
import pytest
import pytest_asyncio
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import BaseModel
from sqlalchemy import select, update

from chatgate.db.models import RequestLog, StoredResponse
from chatgate.limits import admin
from chatgate.responses_api.store import ResponseStore
from tests.helpers import Account, Gateway, parse_sse

pytestmark = pytest.mark.timeout(60)

ANSWER = "Paris is the capital of France."
# The SDK's event classes by their ``type`` (its union is discriminated only at runtime).
EVENT_TYPES: dict[str, type[BaseModel]] = {
    get_args(member.model_fields["type"].annotation)[0]: member
    for member in get_args(get_args(ResponseStreamEvent)[0])
}


def sdk_event(data: dict[str, Any]) -> Any:
    """The event as the openai SDK's own type for it (its validation is the test)."""
    return EVENT_TYPES[data["type"]].model_validate(data)


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def body(input: Any = "Capital of France?", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "input": input, **extra}


def rid() -> str:
    return f"r-{uuid.uuid4().hex}"


async def post(
    gateway: Gateway, account: Account, payload: dict[str, Any], request_id: str | None = None
) -> httpx.Response:
    headers = {**account.key_headers, "X-Request-ID": request_id or rid()}
    async with gateway.client() as client:
        return await client.post("/v1/responses", json=payload, headers=headers)


async def call(gateway: Gateway, account: Account, method: str, response_id: str) -> httpx.Response:
    async with gateway.client() as client:
        return await client.request(
            method, f"/v1/responses/{response_id}", headers=account.key_headers
        )


async def rows(gateway: Gateway, request_id: str) -> list[RequestLog]:
    async with gateway.state.sessionmaker() as db:
        found = await db.scalars(select(RequestLog).where(RequestLog.request_id == request_id))
        return list(found.all())


def sent(gateway: Gateway, request_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = gateway.upstream.by_request_id(request_id).payload
    return payload


@pytest_asyncio.fixture
async def account(gateway: Gateway, fast_passwords: None) -> Account:
    return await gateway.account()


async def test_create_returns_a_response_and_one_usage_row(
    gateway: Gateway, account: Account
) -> None:
    request_id = rid()
    payload = body(instructions="Answer briefly.", max_output_tokens=64, temperature=0.2)
    response = await post(gateway, account, payload, request_id)
    assert response.status_code == 200, response.text
    parsed = Response.model_validate(response.json())
    assert parsed.id.startswith("resp_") and parsed.object == "response"
    assert (parsed.status, parsed.model, parsed.output_text) == ("completed", "fake-model", ANSWER)
    assert (parsed.instructions, parsed.max_output_tokens) == ("Answer briefly.", 64)
    assert response.json()["store"] is True
    [item] = parsed.output
    assert item.type == "message" and item.status == "completed" and item.id.startswith("msg_")
    [row] = await rows(gateway, request_id)
    assert (row.route, row.status, row.status_code, row.user_id) == (
        "v1.responses", "ok", 200, account.user_id,
    )  # fmt: skip
    assert parsed.usage is not None
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (
        row.prompt_tokens, row.completion_tokens,
    )  # fmt: skip
    assert row.completion_tokens == 7  # the engine's count, not an estimate
    assert parsed.usage.total_tokens == row.prompt_tokens + row.completion_tokens
    engine = sent(gateway, request_id)
    assert engine["messages"] == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert (engine["max_tokens"], engine["temperature"], engine["stream"]) == (64, 0.2, True)
    assert engine["stream_options"] == {"include_usage": True}


async def test_stream_events_in_order(gateway: Gateway, account: Account) -> None:
    request_id = rid()
    response = await post(gateway, account, body(stream=True), request_id)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert [e.event for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        *["response.output_text.delta"] * 7,
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e.data["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        assert event.data["type"] == event.event
        sdk_event(event.data)
    deltas = [e.data["delta"] for e in events if e.event == "response.output_text.delta"]
    assert "".join(deltas) == ANSWER
    created, completed = events[0].data["response"], events[-1].data["response"]
    assert created["id"] == completed["id"] and created["status"] == "in_progress"
    assert created["output"] == [] and created["usage"] is None
    item_id = events[2].data["item"]["id"]
    assert {e.data.get("item_id", item_id) for e in events[3:-2]} == {item_id}
    [row] = await rows(gateway, request_id)
    assert completed["usage"]["input_tokens"] == row.prompt_tokens
    assert completed["usage"]["output_tokens"] == row.completion_tokens == 7
    assert completed["output"][0]["content"][0]["text"] == ANSWER
    # stored like a non-streamed one: GET returns the completed object
    stored = await call(gateway, account, "GET", completed["id"])
    assert stored.status_code == 200 and stored.json() == completed


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_round_trip(gateway: Gateway, account: Account, stream: bool) -> None:
    request_id = rid()
    first = body("Weather in Paris? [[tool_call=get_weather]]", tools=[WEATHER], stream=stream,
                 tool_choice="required")  # fmt: skip
    response = await post(gateway, account, first, request_id)
    assert response.status_code == 200, response.text
    if stream:
        events = parse_sse(response.text)
        names = [e.event for e in events]
        assert names == [
            "response.created", "response.in_progress", "response.output_item.added",
            "response.function_call_arguments.delta", "response.function_call_arguments.delta",
            "response.function_call_arguments.done", "response.output_item.done",
            "response.completed",
        ]  # fmt: skip
        for event in events:
            sdk_event(event.data)
        assert events[5].data["arguments"] == '{"city": "Paris"}'
        result = events[-1].data["response"]
    else:
        result = response.json()
    parsed = Response.model_validate(result)
    [item] = parsed.output
    assert item.type == "function_call" and item.status == "completed"
    assert (item.call_id, item.name, item.arguments) == (
        "call_fake1", "get_weather", '{"city": "Paris"}',
    )  # fmt: skip
    engine = sent(gateway, request_id)
    assert engine["tool_choice"] == "required"
    assert engine["tools"][0]["function"]["name"] == "get_weather"
    # The client runs the tool and sends its output, chained on the first response.
    request_id = rid()
    output = {"type": "function_call_output", "call_id": "call_fake1", "output": "18 C"}
    second = body([output], previous_response_id=parsed.id, tools=[WEATHER])
    response = await post(gateway, account, second, request_id)
    assert response.status_code == 200, response.text
    assert Response.model_validate(response.json()).output_text == ANSWER
    assert sent(gateway, request_id)["messages"] == [
        {"role": "user", "content": "Weather in Paris? [[tool_call=get_weather]]"},
        {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_fake1", "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_fake1", "content": "18 C"},
    ]  # fmt: skip


async def test_previous_response_id_chains_the_conversation(
    gateway: Gateway, account: Account
) -> None:
    first = (await post(gateway, account, body("One?", instructions="Be terse."))).json()
    request_id = rid()
    second = await post(gateway, account, body("Two?", previous_response_id=first["id"]),
                        request_id)  # fmt: skip
    assert second.status_code == 200, second.text
    assert second.json()["previous_response_id"] == first["id"]
    # the previous instructions are not carried over (OpenAI's rule)
    assert sent(gateway, request_id)["messages"] == [
        {"role": "user", "content": "One?"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "Two?"},
    ]
    request_id = rid()
    third = await post(
        gateway, account,
        body([{"role": "user", "content": [{"type": "input_text", "text": "Three?"}]}],
             previous_response_id=second.json()["id"], instructions="Now verbose."),
        request_id,
    )  # fmt: skip
    assert third.status_code == 200, third.text
    assert [m["content"] for m in sent(gateway, request_id)["messages"]] == [
        "Now verbose.", "One?", ANSWER, "Two?", ANSWER, "Three?",
    ]  # fmt: skip


async def test_responses_belong_to_their_user(gateway: Gateway, account: Account) -> None:
    mine = (await post(gateway, account, body())).json()
    other = await gateway.account()
    request_id = rid()
    stolen = await post(gateway, other, body("x", previous_response_id=mine["id"]), request_id)
    # OpenAI's answer to a previous response it does not have (what agent clients detect)
    assert stolen.status_code == 400
    assert stolen.json()["error"] == {
        "type": "invalid_request_error",
        "message": f"Previous response with id '{mine['id']}' not found.",
        "code": "previous_response_not_found",
        "param": "previous_response_id",
    }
    [row] = await rows(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.responses", "rejected", 400)
    foreign = await call(gateway, other, "GET", mine["id"])
    assert foreign.status_code == 404
    assert foreign.json()["error"]["message"] == f"Response with id '{mine['id']}' not found."
    assert (await call(gateway, other, "DELETE", mine["id"])).status_code == 404
    got = await call(gateway, account, "GET", mine["id"])
    assert got.status_code == 200 and got.json() == mine
    deleted = await call(gateway, account, "DELETE", mine["id"])
    assert deleted.json() == {"id": mine["id"], "object": "response", "deleted": True}
    assert (await call(gateway, account, "GET", mine["id"])).status_code == 404
    assert (await call(gateway, account, "DELETE", mine["id"])).status_code == 404
    for odd in ("resp_%00", "x" * 65, "r%C3%A9sp"):  # never looked up: a 404, not a 500
        assert (await call(gateway, account, "GET", odd)).status_code == 404
    follow = await post(gateway, account, body("x", previous_response_id="a\u0000b"))
    assert follow.status_code == 400
    assert follow.json()["error"]["message"] == "Previous response not found."


async def test_store_false_keeps_nothing(gateway: Gateway, account: Account) -> None:
    unstored = (await post(gateway, account, body(store=False))).json()
    assert unstored["store"] is False and unstored["status"] == "completed"
    async with gateway.state.sessionmaker() as db:
        assert await db.get(StoredResponse, unstored["id"]) is None
    assert (await call(gateway, account, "GET", unstored["id"])).status_code == 404
    follow = await post(gateway, account, body("x", previous_response_id=unstored["id"]))
    assert follow.status_code == 400
    assert follow.json()["error"]["code"] == "previous_response_not_found"


async def test_expired_responses_are_not_served_and_get_deleted(
    gateway: Gateway, account: Account
) -> None:
    old = (await post(gateway, account, body())).json()
    days = gateway.settings.responses_retention_days
    async with gateway.state.sessionmaker() as db:
        await db.execute(
            update(StoredResponse)
            .where(StoredResponse.id == old["id"])
            .values(created_at=datetime.now(UTC) - timedelta(days=days, minutes=1))
        )
        await db.commit()
    assert (await call(gateway, account, "GET", old["id"])).status_code == 404
    follow = await post(gateway, account, body("x", previous_response_id=old["id"]))
    assert follow.status_code == 400
    assert follow.json()["error"]["param"] == "previous_response_id"
    # The next save past the cleanup interval deletes every expired row (lazily).
    store: ResponseStore = gateway.app.state.responses_store
    store.next_cleanup = 0.0
    fresh = (await post(gateway, account, body())).json()
    async with gateway.state.sessionmaker() as db:
        assert await db.get(StoredResponse, old["id"]) is None
        assert await db.get(StoredResponse, fresh["id"]) is not None
    assert store.next_cleanup > 0.0
    assert await store.delete_expired() == 0  # nothing left: any replica may run it again


async def test_text_format_becomes_response_format(gateway: Gateway, account: Account) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request_id = rid()
    text = {"format": {"type": "json_schema", "name": "City", "schema": schema, "strict": True}}
    response = await post(gateway, account, body(text=text), request_id)
    assert response.status_code == 200, response.text
    assert response.json()["text"]["format"]["name"] == "City"
    assert sent(gateway, request_id)["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "City", "schema": schema, "strict": True},
    }  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"model": "fake-model"}, "input"),
        (body([{"role": "user", "content": 5}]), "input[0].content"),
        (body(tools=[{"type": "web_search"}]), "tools[0].type"),
        (body(max_output_tokens=10**9), "max_output_tokens"),
        (body(top_p=2), "top_p"),
        (body([{"type": "a\u0000b"}]), "input[0]"),  # quoted in the row: no NUL there
    ],
)
async def test_bad_input_is_a_400_naming_the_param(
    gateway: Gateway, account: Account, payload: dict[str, Any], param: str
) -> None:
    request_id = rid()
    response = await post(gateway, account, payload, request_id)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    [row] = await rows(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.responses", "rejected", 400)


async def test_unknown_model_and_no_credentials(gateway: Gateway, account: Account) -> None:
    for model in ("gpt-x", "a\u0000b"):  # a NUL byte too: a 404, its row written
        unknown = await post(gateway, account, {**body(), "model": model})
        assert unknown.status_code == 404
    async with gateway.client() as client:
        anonymous = await client.post("/v1/responses", json=body())
        listed = await client.get("/v1/responses/resp_x")
    assert anonymous.status_code == 401 and listed.status_code == 401
    assert anonymous.json()["error"]["type"] == "authentication_error"


async def test_engine_failure_before_and_during_the_stream(
    gateway: Gateway, account: Account
) -> None:
    request_id = rid()
    failed = await post(gateway, account, body("[[status=500]]"), request_id)
    assert failed.status_code == 502
    [row] = await rows(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.responses", "error", 502)
    request_id = rid()
    broken = await post(gateway, account, body("[[crash_after=3]]", stream=True), request_id)
    events = parse_sse(broken.text)
    assert events[-1].event == "response.failed"
    failure = sdk_event(events[-1].data)
    assert failure.response.status == "failed"
    [row] = await rows(gateway, request_id)
    assert (row.route, row.status, row.completion_tokens) == ("v1.responses", "error", 3)
    response_id = events[0].data["response"]["id"]
    assert (await call(gateway, account, "GET", response_id)).status_code == 404


async def test_rate_limit_is_429_with_retry_after(gateway: Gateway, account: Account) -> None:
    async with gateway.client() as client:
        listed = (await client.get("/api/keys", headers=account.headers)).json()["keys"]
    async with gateway.state.sessionmaker() as db:
        await admin.set_key_limits(db, int(listed[0]["id"]), {"requests_per_minute": 1})
    first = await post(gateway, account, body())
    second = await post(gateway, account, body())
    assert first.status_code == 200 and first.headers["X-RateLimit-Limit"] == "1"
    assert second.status_code == 429
    assert second.json()["error"]["type"] == "rate_limit_error"
    assert 1 <= int(second.headers["Retry-After"]) <= 60


async def test_client_leaving_mid_stream_aborts_the_engine(
    gateway: Gateway, account: Account
) -> None:
    request_id = rid()
    payload = body("[[chunks=200 delay=0.02]]", stream=True)
    headers = {**account.key_headers, "X-Request-ID": request_id}
    data: list[dict[str, Any]] = []
    async with gateway.client() as client:
        async with client.stream(
            "POST", "/v1/responses", json=payload, headers=headers
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    data.append(json.loads(line[6:]))
                if data and data[-1]["type"] == "response.output_text.delta":
                    break  # the client goes away after its first text
    await eventually(lambda: gateway.upstream.by_request_id(request_id).aborted_at)
    [row] = await eventually(lambda: rows(gateway, request_id))
    assert (row.route, row.status, row.status_code) == ("v1.responses", "cancelled", 499)
    assert row.completion_tokens < 200
    # an answer nobody received is not kept
    response_id = data[0]["response"]["id"]
    assert (await call(gateway, account, "GET", response_id)).status_code == 404


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

"""A forced tool call on llama.cpp engines (engines/upstream/forced_tools): the gateway sends the
engine a JSON schema of the call instead of the ``tool_choice`` llama-server cannot read,
and turns the JSON it answers into OpenAI's ``tool_calls``, for every dialect; an answer
that was cut or is not a call stays text. The fake engine here is named like the
llama.cpp profile ``smollm2-135m`` (so the gateway takes it for llama.cpp) and answers
what a grammar-bound llama-server writes. The real engine: tests/clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from chatgate.engines.catalog.profiles import engine_kind, load_profiles
from chatgate.engines.upstream.forced_tools import ToolCallAdapter, enforce, parse_call
from chatgate.errors import APIError
from tests.conftest import _migrated_url as migrated_url
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Account, Gateway, parse_sse, start_gateway

MODEL = "smollm2-135m"  # a bundled profile with engine: llamacpp
PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"]}  # fmt: skip
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                            "parameters": PARAMETERS}}  # fmt: skip
TIME = {"type": "function", "function": {"name": "get_time"}}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
CALL = ['{"name": "get_weather", ', '"arguments": {"city": ', '"Paris"}}']


def request(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [WEATHER, TIME], **extra}  # fmt: skip


# -- the engine request ---------------------------------------------------------------


def test_a_named_function_becomes_a_schema_of_its_call() -> None:
    payload = request(tool_choice=NAMED, parallel_tool_calls=False)
    assert enforce(payload, "llamacpp") is not None
    schema = payload.pop("response_format")["json_schema"]["schema"]
    assert schema == {
        "type": "object",
        "properties": {"name": {"const": "get_weather"}, "arguments": PARAMETERS},
        "required": ["name", "arguments"],
    }
    # the tools stay for the template to describe; llama.cpp parses no call of its own
    assert payload == request(tool_choice="none", parallel_tool_calls=False)


def test_required_allows_any_of_the_tools() -> None:
    payload = request(tool_choice="required")
    adapter = enforce(payload, "llamacpp")
    assert adapter is not None and adapter.names == {"get_weather", "get_time"}
    options = payload["response_format"]["json_schema"]["schema"]["anyOf"]
    assert [o["properties"]["name"]["const"] for o in options] == ["get_weather", "get_time"]
    # a function without parameters takes any object
    assert options[1]["properties"]["arguments"] == {"type": "object"}
    assert payload["tool_choice"] == "none"


@pytest.mark.parametrize("kind", ["vllm", "openai", None])
def test_engines_that_call_natively_are_left_alone(kind: str | None) -> None:
    payload = request(tool_choice=NAMED)
    assert enforce(payload, kind) is None
    assert payload == request(tool_choice=NAMED)


@pytest.mark.parametrize("choice", [None, "auto", "none"])
def test_an_unforced_choice_is_left_alone(choice: str | None) -> None:
    payload = request(**({"tool_choice": choice} if choice else {}))
    assert enforce(payload, "llamacpp") is None
    assert "response_format" not in payload and payload["tools"] == [WEATHER, TIME]


@pytest.mark.parametrize(
    "payload",
    [request(tool_choice={"type": "function", "function": {"name": "nope"}}),
     {"messages": [], "tool_choice": "required"}],
)  # fmt: skip
def test_a_choice_without_its_tool_is_a_400(payload: dict[str, Any]) -> None:
    with pytest.raises(APIError) as caught:
        enforce(payload, "llamacpp")
    assert (caught.value.status_code, caught.value.param) == (400, "tool_choice")


def test_the_kind_comes_from_the_profile() -> None:
    profiles = load_profiles(None)
    assert engine_kind(MODEL, profiles) == "llamacpp"
    assert engine_kind("fake-model", profiles) is None


# -- the engine's answer ---------------------------------------------------------------


def line(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
    choice = {"index": index, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"id": "c1", "model": "m", "choices": [choice]}).encode()


def chunks(lines: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(raw.removeprefix(b"data: ")) for raw in lines if raw != b"data: [DONE]"]


def test_a_call_comes_out_as_one_tool_call_chunk() -> None:
    adapter = ToolCallAdapter(frozenset({"get_weather"}))
    out = adapter.adapt([line({"role": "assistant", "content": ""})])
    assert chunks(out)[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert [adapter.adapt([line({"content": piece})]) for piece in CALL] == [[], [], []]
    usage = b'data: {"choices": [], "usage": {"completion_tokens": 9}}'
    out = adapter.adapt([line({}, "stop"), usage, b"data: [DONE]"])
    call, finish, report = chunks(out)
    delta = call["choices"][0]["delta"]
    assert delta["tool_calls"][0]["id"].startswith("call_")
    assert {**delta["tool_calls"][0], "id": None} == {
        "index": 0, "id": None, "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }  # fmt: skip
    assert call["id"] == "c1" and call["choices"][0]["finish_reason"] is None
    assert finish["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "tool_calls"}
    assert report["usage"] == {"completion_tokens": 9} and out[-1] == b"data: [DONE]"


@pytest.mark.parametrize(
    ("pieces", "finish"),
    [(CALL[:2], "length"),  # cut by the limit: no call is invented
     (["Paris is sunny."], "stop"),  # not JSON
     (['{"name": "get_time", "arguments": {}}'], "stop"),  # not a call it may make
     (['{"name": "get_weather", "arguments": "x"}'], "stop")],
)  # fmt: skip
def test_anything_else_stays_text(pieces: list[str], finish: str) -> None:
    adapter = ToolCallAdapter(frozenset({"get_weather"}))
    out = adapter.adapt([line({"content": piece}) for piece in pieces] + [line({}, finish)])
    text, end = chunks(out)
    assert text["choices"][0]["delta"] == {"content": "".join(pieces)}
    assert end["choices"][0]["finish_reason"] == finish


def test_a_whole_call_cut_by_the_limit_in_trailing_whitespace_is_the_call() -> None:
    adapter = ToolCallAdapter(frozenset({"get_weather"}))
    pieces = [*CALL, "\n\n", " " * 20]  # the grammar's trailing space, up to the limit
    out = adapter.adapt([line({"content": piece}) for piece in pieces] + [line({}, "length")])
    call, end = chunks(out)
    assert call["choices"][0]["delta"]["tool_calls"][0]["function"] == {
        "name": "get_weather", "arguments": '{"city":"Paris"}'
    }  # fmt: skip
    assert end["choices"][0]["finish_reason"] == "tool_calls"


def test_an_engines_own_call_passes_and_a_stream_without_finish_keeps_its_text() -> None:
    adapter = ToolCallAdapter(frozenset({"get_weather"}))
    native = line({"tool_calls": [{"index": 0, "id": "x"}]})
    out = adapter.adapt([native, line({}, "tool_calls")])
    assert chunks(out) == chunks([native, line({}, "tool_calls")])
    adapter = ToolCallAdapter(frozenset({"get_weather"}))
    assert adapter.adapt([line({"content": "{"}, index=1)]) == []
    (held,) = chunks(adapter.end())
    assert held["choices"][0]["delta"] == {"content": "{"} and held["choices"][0]["index"] == 1
    assert parse_call("[1]", frozenset({"a"})) is None


# -- through the gateway, every dialect ------------------------------------------------------


@pytest.fixture(scope="module")
def engine_upstream() -> Iterator[FakeUpstream]:
    yield FakeUpstream(model=MODEL)


@pytest_asyncio.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, engine_upstream: FakeUpstream
) -> AsyncIterator[Gateway]:
    await engine_upstream.start()
    tmp: Path = tmp_path_factory.mktemp("forced-tools")
    try:
        async for url in migrated_url("sqlite", tmp):
            settings = gateway_settings(
                tmp, url, engine_upstream, engines=[f"{MODEL}={engine_upstream.url}"],
                default_model=MODEL,
            )  # fmt: skip
            async with start_gateway(settings, engine_upstream) as gw:
                yield gw
    finally:
        await engine_upstream.stop()


@pytest_asyncio.fixture
async def account(gateway: Gateway) -> AsyncIterator[Account]:
    gateway.upstream.script, gateway.upstream.finish_reason = list(CALL), "stop"
    yield await gateway.account()
    gateway.upstream.script, gateway.upstream.finish_reason = None, "stop"


async def post(gateway: Gateway, account: Account, path: str, body: dict[str, Any]) -> Any:
    headers = {**account.key_headers, "x-api-key": account.api_key,
               "anthropic-version": "2023-06-01"}  # fmt: skip
    async with gateway.client(headers=headers) as client:
        response = await client.post(path, json={"model": MODEL, **body})
    assert response.status_code == 200, response.text
    return response.json() if not body.get("stream") else parse_sse(response.text)


async def test_chat_answers_the_call(gateway: Gateway, account: Account) -> None:
    answer = await post(gateway, account, "/v1/chat/completions", request(tool_choice=NAMED))
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert answer["usage"]["completion_tokens"] == len(CALL)  # the engine's, untouched
    sent = gateway.upstream.requests[-1].payload
    assert sent["tool_choice"] == "none" and sent["tools"] == [WEATHER, TIME]
    assert sent["response_format"]["json_schema"]["schema"]["properties"]["name"] == {
        "const": "get_weather"
    }


async def test_a_chat_stream_carries_the_call(gateway: Gateway, account: Account) -> None:
    body = request(tool_choice="required", stream=True, stream_options={"include_usage": True})
    events = await post(gateway, account, "/v1/chat/completions", body)
    data = [e.data for e in events if e.data != "[DONE]"]
    deltas = [c["delta"] for d in data for c in d["choices"]]
    assert not any(delta.get("content") for delta in deltas)
    calls = [call for delta in deltas for call in delta.get("tool_calls") or []]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    finishes = [c["finish_reason"] for d in data for c in d["choices"] if c["finish_reason"]]
    assert finishes == ["tool_calls"]
    assert data[-1]["usage"]["completion_tokens"] == len(CALL)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_cut_answer_stays_text(gateway: Gateway, account: Account, stream: bool) -> None:
    gateway.upstream.script, gateway.upstream.finish_reason = CALL[:2], "length"
    body = request(tool_choice=NAMED, stream=stream)
    answer = await post(gateway, account, "/v1/chat/completions", body)
    if stream:
        data = [e.data for e in answer if e.data != "[DONE]"]
        text = "".join(c["delta"].get("content") or "" for d in data for c in d["choices"])
        finishes = [c["finish_reason"] for d in data for c in d["choices"] if c["finish_reason"]]
        assert (text, finishes) == ("".join(CALL[:2]), ["length"])
    else:
        choice = answer["choices"][0]
        assert choice["finish_reason"] == "length" and "tool_calls" not in choice["message"]
        assert choice["message"]["content"] == "".join(CALL[:2])


async def test_messages_answer_a_tool_use(gateway: Gateway, account: Account) -> None:
    tool = {"name": "get_weather", "description": "Weather", "input_schema": PARAMETERS}
    body = {"max_tokens": 48, "messages": [{"role": "user", "content": "Weather?"}],
            "tools": [tool], "tool_choice": {"type": "tool", "name": "get_weather"}}  # fmt: skip
    answer = await post(gateway, account, "/v1/messages", body)
    assert answer["stop_reason"] == "tool_use"
    (block,) = [b for b in answer["content"] if b["type"] == "tool_use"]
    assert (block["name"], block["input"]) == ("get_weather", {"city": "Paris"})
    streamed = await post(gateway, account, "/v1/messages", {**body, "tool_choice": {"type": "any"},
                                                              "stream": True})  # fmt: skip
    starts = [e.data["content_block"] for e in streamed
              if e.event == "content_block_start"]  # fmt: skip
    assert [(b["type"], b["name"]) for b in starts] == [("tool_use", "get_weather")]


async def test_responses_answer_a_function_call(gateway: Gateway, account: Account) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": PARAMETERS}
    body = {"input": "Weather?", "tools": [tool], "max_output_tokens": 48,
            "tool_choice": {"type": "function", "name": "get_weather"}}  # fmt: skip
    answer = await post(gateway, account, "/v1/responses", body)
    assert answer["status"] == "completed"
    (call,) = [item for item in answer["output"] if item["type"] == "function_call"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Paris"}

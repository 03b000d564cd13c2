"""Anthropic ⇄ chat-completions translation, without sockets: requests one way, chunk
streams and stop reasons the other."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.anthropic_api.schemas import MessagesRequest, parse
from chatgate.anthropic_api.stream import MessageTranslator, encode
from chatgate.anthropic_api.translate import error_body, stop_reason, to_chat_body
from chatgate.errors import APIError
from tests.fakes.upstream import chunk, tool_call_deltas

TOOL = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def request(**extra: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 32, "messages": [{"role": "user", "content": "Hi"}]}
    return parse(MessagesRequest, {**body, **extra})


def test_request_maps_system_sampling_stops_and_tools() -> None:
    body = to_chat_body(
        request(
            system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            temperature=0.2,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END"],
            tools=[TOOL],
            tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        )
    )
    assert body["messages"][0] == {"role": "system", "content": "Be brief.\n\nBe kind."}
    assert body["messages"][1] == {"role": "user", "content": "Hi"}
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["top_k"]) == (
        32, 0.2, 0.9, 40,
    )  # fmt: skip
    assert body["stop"] == ["END"] and body["stream"] is True
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": TOOL["input_schema"],
            },
        }
    ]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("choice", "expected"), [("auto", "auto"), ("any", "required"), ("none", "none")]
)
def test_tool_choice_kinds(choice: str, expected: str) -> None:
    body = to_chat_body(request(tools=[TOOL], tool_choice={"type": choice}))
    assert body["tool_choice"] == expected


def test_tool_round_trip_history_becomes_tool_calls_and_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
            ],
        },  # fmt: skip
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "18 C"}],
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },  # fmt: skip
    ]
    body = to_chat_body(request(messages=messages, tools=[TOOL]))
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },  # fmt: skip
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_images_become_image_parts_and_errors_are_marked() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AA=="},
    }
    result = {"type": "tool_result", "tool_use_id": "t", "content": "boom", "is_error": True}
    messages = [{"role": "user", "content": [result, {"type": "text", "text": "What?"}, image]}]
    body = to_chat_body(request(messages=messages))
    assert body["messages"][0] == {"role": "tool", "tool_call_id": "t", "content": "Error: boom"}
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "What?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
         "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
         "messages.0.role"),
        ({"model": "m", "max_tokens": 5, "temperature": 3,
          "messages": [{"role": "user", "content": "x"}]}, "temperature"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
          "tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0"),
    ],
)  # fmt: skip
def test_invalid_requests_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(APIError) as caught:
        parse(MessagesRequest, body)
    assert caught.value.status_code == 400
    assert caught.value.param is not None and caught.value.param.startswith(field)


def test_stop_reasons() -> None:
    assert stop_reason("stop", None, None) == "end_turn"
    assert stop_reason("length", None, None) == "max_tokens"
    assert stop_reason("tool_calls", None, None) == "tool_use"
    assert stop_reason("stop", "END", ["END"]) == "stop_sequence"  # vLLM names the match
    assert stop_reason("stop", 2, ["END"]) == "end_turn"  # a token id: the end of turn


def test_error_shapes() -> None:
    assert error_body(429, "slow down") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "slow down"},
    }
    types = {status: error_body(status, "")["error"]["type"] for status in
             (400, 401, 403, 404, 413, 500, 502, 503, 504, 529)}  # fmt: skip
    assert types == {
        400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
        404: "not_found_error", 413: "request_too_large", 500: "api_error", 502: "api_error",
        503: "overloaded_error", 504: "api_error", 529: "overloaded_error",
    }  # fmt: skip


def test_text_then_tool_call_events_and_message() -> None:
    translator = MessageTranslator("m", 10, None)
    events = translator.start()
    events += translator.feed(chunk("m", {"role": "assistant", "content": ""}))
    events += translator.feed(chunk("m", {"content": "Checking"}))
    for delta in tool_call_deltas("get_weather"):
        events += translator.feed(chunk("m", delta))
    events += translator.feed(chunk("m", {}, "tool_calls"))
    events += translator.finish(12, 7)
    names = [name for name, _ in events]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[5][1]["content_block"] == {
        "type": "tool_use", "id": "call_fake1", "name": "get_weather", "input": {},
    }  # fmt: skip
    partial = "".join(data["delta"]["partial_json"] for name, data in events[6:8])
    assert partial == '{"city": "Paris"}'
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2][1]["usage"] == {"input_tokens": 12, "output_tokens": 7}
    message = translator.message(12, 7)
    assert message["content"] == [
        {"type": "text", "text": "Checking"},
        {"type": "tool_use", "id": "call_fake1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert encode(events[:1]).startswith(b"event: message_start\ndata: {")


def test_vllm_stop_reason_names_the_stop_sequence() -> None:
    translator = MessageTranslator("m", 1, ["END"])
    translator.feed(chunk("m", {"content": "a"}))
    last = chunk("m", {}, "stop")
    last["choices"][0]["stop_reason"] = "END"
    translator.feed(last)
    message = translator.message(1, 1)
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", "END")


def test_structured_output_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    config = {"format": {"type": "json_schema", "schema": schema}, "effort": "low"}
    body = to_chat_body(request(output_config=config))
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }
    assert "response_format" not in to_chat_body(request(output_config={"effort": "high"}))

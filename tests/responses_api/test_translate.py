"""The Responses dialect without a gateway: request → chat body, chunks → events, and
every event and response object checked against the openai SDK's own types."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from openai.types.responses import Response, ResponseOutputMessage, ResponseStreamEvent
from pydantic import BaseModel

from chatgate.errors import APIError
from chatgate.responses_api import translate
from chatgate.responses_api.schemas import ResponsesRequest, parse
from chatgate.responses_api.stream import ResponseTranslator

# The SDK's event classes by their ``type`` (its union is discriminated only at runtime).
EVENT_TYPES: dict[str, type[BaseModel]] = {
    get_args(member.model_fields["type"].annotation)[0]: member
    for member in get_args(get_args(ResponseStreamEvent)[0])
}


def sdk_event(data: dict[str, Any]) -> Any:
    """The event as the openai SDK's own type for it (its validation is the test)."""
    return EVENT_TYPES[data["type"]].model_validate(data)


def chat_body(body: dict[str, Any], prior: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return translate.to_chat_body(parse(ResponsesRequest, body), prior or [])


def test_items_become_chat_messages() -> None:
    body = {
        "model": "m",
        "instructions": "Be brief.",
        "input": [
            {"role": "developer", "content": "Use metric units."},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "Weather?"},
                         {"type": "input_image", "image_url": "https://x/y.png"}]},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
            {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call_output", "call_id": "c1", "output": "18 C"},
            {"type": "function_call_output", "call_id": "c2",
             "output": [{"type": "input_text", "text": "20 C"}]},
        ],
        "max_output_tokens": 32,
        "temperature": 0.5,
    }  # fmt: skip
    sent = chat_body(body)
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Use metric units."},
        {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "c1", "content": "18 C"},
        {"role": "tool", "tool_call_id": "c2", "content": "20 C"},
    ]  # fmt: skip
    assert (sent["max_tokens"], sent["temperature"], sent["stream"]) == (32, 0.5, True)


def test_tools_choice_and_text_format() -> None:
    tool = {"type": "function", "name": "w", "parameters": {"type": "object"}, "strict": True}
    other = {"type": "function", "name": "x"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    sent = chat_body({
        "model": "m", "input": "hi", "tools": [tool, other],
        "tool_choice": {"type": "function", "name": "w"}, "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "A", "schema": schema, "strict": True}},
    })  # fmt: skip
    function = {"name": "w", "description": "", "parameters": {"type": "object"}, "strict": True}
    assert sent["tools"][0] == {"type": "function", "function": function}
    assert sent["tools"][1]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "w"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "A", "schema": schema, "strict": True},
    }  # fmt: skip
    allowed = {"type": "allowed_tools", "mode": "required",
               "tools": [{"type": "function", "name": "x"}]}  # fmt: skip
    sent = chat_body({"model": "m", "input": "hi", "tools": [tool, other], "tool_choice": allowed,
                      "text": {"format": {"type": "json_object"}}})  # fmt: skip
    assert [t["function"]["name"] for t in sent["tools"]] == ["x"]
    assert sent["tool_choice"] == "required"
    assert sent["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": [{"role": "user", "content": 5}]}, "input[0].content"),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "name": "w"}]}, "input[0].call_id"),
        ({"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
         "input[0].content[0].text"),
        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "temperature": 3}, "temperature"),
        ({"input": "x", "text": {"format": {"type": "json_schema", "name": "A"}}},
         "text.format.schema"),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
         "input[0].content[0].type"),
        ({"input": "x", "background": True}, "background"),
    ],
)  # fmt: skip
def test_bad_input_names_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(APIError) as caught:
        chat_body({"model": "m", **body})
    assert caught.value.status_code == 400
    assert caught.value.param == param, caught.value.message


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def translator() -> ResponseTranslator:
    request = parse(ResponsesRequest, {"model": "m", "input": "hi"})
    return ResponseTranslator("m", translate.echo(request, {"model": "m", "input": "hi"}))


def test_text_then_tool_call_events_in_order() -> None:
    live = translator()
    events = live.start()
    events += live.feed(chunk({"content": "Let me"}))
    events += live.feed(chunk({"content": " check."}))
    call = {"index": 0, "id": "call_1", "function": {"name": "w", "arguments": '{"a":'}}
    events += live.feed(chunk({"tool_calls": [call]}))
    events += live.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}))
    events += live.feed(chunk({}, "tool_calls"))
    live.usage = (5, 4)
    events += live.finish()
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        sdk_event(event)  # the SDK's own types accept every event
    final = Response.model_validate(events[-1]["response"])
    assert final.status == "completed" and final.output_text == "Let me check."
    assert final.output[1].type == "function_call"
    assert (final.output[1].call_id, final.output[1].arguments) == ("call_1", '{"a":1}')
    assert final.usage is not None and final.usage.total_tokens == 9


def test_length_finish_is_incomplete_and_empty_answer_has_a_message() -> None:
    live = translator()
    events = [*live.start(), *live.feed(chunk({"content": "abc"})), *live.feed(chunk({}, "length"))]
    events += live.finish()
    assert events[-1]["type"] == "response.incomplete"
    response = Response.model_validate(events[-1]["response"])
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    message = response.output[0]
    assert isinstance(message, ResponseOutputMessage) and message.status == "incomplete"
    empty = translator()
    events = [*empty.start(), *empty.feed(chunk({}, "stop")), *empty.finish()]
    assert [e["type"] for e in events][2:] == [
        "response.output_item.added", "response.content_part.added",
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert Response.model_validate(events[-1]["response"]).output_text == ""


def test_failure_is_response_failed() -> None:
    live = translator()
    events = [*live.start(), *live.feed(chunk({"content": "abc"}))]
    events += live.failed(APIError(502, "engine died", "engine_disconnected"))
    assert events[-1]["type"] == "response.failed"
    failed = sdk_event(events[-1])
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.message == "engine died"

"""Tool calls and structured output through the official ``openai`` SDK: a forced call, the
round trip that sends back the assistant message (``content: None`` + ``tool_calls``) and
the tool's answer, a streamed call, and JSON-schema output the SDK's ``parse`` helper and
``json.loads`` accept. Run by ``openai_client.py``.

The schemas use enums so that a grammar-constrained small model finishes its JSON within
the token limit: whether the answer is right is not the test, its shape is.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel
from sdk_support import Context, Report, drain, resolve, weather_question

CITY = {"type": "string", "enum": ["Paris", "London", "Berlin"]}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": CITY},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
FORCE = {"type": "function", "function": {"name": "get_weather"}}
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"city": CITY, "is_capital": {"type": "boolean"}},
    "required": ["city", "is_capital"],
    "additionalProperties": False,
}


class CityAnswer(BaseModel):
    city: Literal["Paris", "London", "Berlin"]
    is_capital: bool


def question(context: Context) -> list[dict[str, Any]]:
    return [{"role": "user", "content": weather_question(context.strict)}]


def forced(context: Context, **options: Any) -> Any:
    return context.client.chat.completions.create(
        model=context.model, messages=question(context), tools=[WEATHER_TOOL], tool_choice=FORCE,
        max_tokens=48, temperature=0.0, **options,
    )  # fmt: skip


async def tool_forced(context: Context) -> Report:
    """``tool_choice`` naming a function: OpenAI guarantees a call of it, whatever the model."""
    choice = (await resolve(forced(context))).choices[0]
    # OpenAI ends a call it was forced to make with "stop", engines with "tool_calls"
    assert choice.finish_reason in ("tool_calls", "stop"), choice
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1, choice.message
    call = calls[0]
    assert call.type == "function" and call.id, call
    assert call.function.name == "get_weather", call
    arguments = json.loads(call.function.arguments)
    assert arguments["city"] in CITY["enum"], arguments
    if context.strict:
        assert arguments == {"city": "Paris"} and choice.finish_reason == "tool_calls", choice
    context.memo["tool_call"] = {"id": call.id, "arguments": call.function.arguments}
    return {"arguments": arguments}


async def tool_round_trip(context: Context) -> Report:
    """The second leg: the assistant's call sent back with ``content: None`` (what the SDK's
    own message holds) and the tool's answer, then a final answer. The call is the one
    ``tool_forced`` got, or one like it where that failed (that check reports it)."""
    made = context.memo.get("tool_call") or {"id": "call_1", "arguments": '{"city": "Paris"}'}
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": made["id"], "type": "function",
                        "function": {"name": "get_weather", "arguments": made["arguments"]}}],
    }  # fmt: skip
    tool = {"role": "tool", "tool_call_id": made["id"], "content": "18 C, sunny"}
    final = await resolve(
        context.client.chat.completions.create(
            model=context.model, messages=[*question(context), assistant, tool],
            tools=[WEATHER_TOOL], max_tokens=8, temperature=0.0,
        )
    )  # fmt: skip
    assert final.object == "chat.completion" and len(final.choices) == 1, final
    answer = final.choices[0]
    assert answer.message.role == "assistant", answer
    assert answer.finish_reason in ("stop", "length", "tool_calls"), answer
    assert answer.message.content is not None or answer.message.tool_calls, answer
    if context.strict:
        assert answer.message.content == "Paris is the capital of France.", answer
    assert final.usage.completion_tokens <= 8, final.usage
    return {"used_the_forced_call": "tool_call" in context.memo, "finish": answer.finish_reason}


async def tool_stream(context: Context) -> Report:
    """A forced call, streamed: the id and name come first, the arguments in pieces."""
    chunks = await drain(forced(context, stream=True))
    deltas = [d for chunk in chunks for c in chunk.choices for d in c.delta.tool_calls or []]
    assert deltas, "no tool call was streamed"
    assert deltas[0].id and deltas[0].function.name == "get_weather", deltas[0]
    assert all(delta.index == 0 for delta in deltas), deltas
    arguments = json.loads("".join(d.function.arguments or "" for d in deltas if d.function))
    assert arguments["city"] in CITY["enum"], arguments
    finishes = [c.finish_reason for chunk in chunks for c in chunk.choices if c.finish_reason]
    assert finishes in (["tool_calls"], ["stop"]), finishes
    return {"arguments": arguments}


async def structured_parse(context: Context) -> Report:
    """The SDK's structured-output helper: a pydantic model, strict json_schema."""
    completion = await resolve(
        context.client.chat.completions.parse(
            model=context.model,
            messages=[{"role": "user", "content": "Which city is the capital of France?"}],
            response_format=CityAnswer,
            max_tokens=48,
            temperature=0.0,
        )
    )
    message = completion.choices[0].message
    assert isinstance(message.parsed, CityAnswer), message
    return {"parsed": message.parsed.model_dump()}


async def json_schema(context: Context) -> Report:
    """``response_format`` json_schema as a plain request: the content parses and fits."""
    completion = await resolve(
        context.client.chat.completions.create(
            model=context.model,
            messages=[{"role": "user", "content": "Is Berlin a capital? Answer in JSON."}],
            response_format={"type": "json_schema", "json_schema": {
                "name": "city_answer", "strict": True, "schema": ANSWER_SCHEMA}},
            max_tokens=48,
            temperature=0.0,
        )
    )  # fmt: skip
    assert completion.choices[0].finish_reason == "stop", completion
    value = json.loads(completion.choices[0].message.content)
    assert set(value) == {"city", "is_capital"}, value
    assert value["city"] in CITY["enum"] and isinstance(value["is_capital"], bool), value
    return {"value": value}


TOOL_CHECKS = {
    "tool_forced": tool_forced,
    "tool_round_trip": tool_round_trip,
    "tool_stream": tool_stream,
    "structured_parse": structured_parse,
    "json_schema": json_schema,
}

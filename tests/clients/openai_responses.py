"""The Responses API through the official ``openai`` SDK's ``responses.create``: text,
``instructions``, streaming events, a function-call round trip, and conversations chained
by ``previous_response_id`` (stored per user; ``store: false`` is not stored). Run by
``openai_client.py``.

OpenAI answers an unknown, foreign or unstored ``previous_response_id`` with a 400, code
``previous_response_not_found``, param ``previous_response_id`` (agent clients detect it
to resend the whole conversation).
"""

from __future__ import annotations

import json
from typing import Any

import openai
from openai_chat import FAKE_ANSWER
from openai_other import expect_error, other_client
from sdk_support import Context, Report, drain, resolve, weather_question

LIMIT = 16  # OpenAI's smallest max_output_tokens
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather of a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "enum": ["Paris", "London", "Berlin"]}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def words(text: str) -> int:
    return len(text.split())


def check_response(response: Any, context: Context) -> None:
    assert response.object == "response" and response.id.startswith("resp_"), response
    assert response.model == context.model, response.model
    assert response.status in ("completed", "incomplete"), response.status
    if response.status == "incomplete":
        assert response.incomplete_details.reason == "max_output_tokens", response
    assert response.output, response
    for item in response.output:
        assert item.type in ("message", "function_call"), item
        if item.type == "message":
            assert item.role == "assistant" and item.id, item
            assert all(part.type == "output_text" for part in item.content), item
    usage = response.usage
    assert usage.input_tokens > 0 and 0 <= usage.output_tokens <= LIMIT, usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens, usage


async def create(client: Any, context: Context, **options: Any) -> Any:
    options.setdefault("max_output_tokens", LIMIT)
    return await resolve(client.responses.create(model=context.model, **options))


async def prompt_tokens(context: Context, messages: list[dict[str, str]]) -> int:
    """What the engine counts for ``messages`` as a chat completion's prompt."""
    completion = await resolve(
        context.client.chat.completions.create(model=context.model, messages=messages, max_tokens=1)
    )
    return int(completion.usage.prompt_tokens)


async def responses_create(context: Context) -> Report:
    """``instructions`` are the system message of the chat the answer comes from: the
    engine counts the same prompt for both (a model's template may add a default system
    message where there is none, so "more tokens with instructions" would not hold)."""
    question, instructions = "What is the capital of France?", "You are terse."
    told = await create(
        context.client, context, input=question, instructions=instructions, temperature=0.0
    )
    check_response(told, context)
    assert told.instructions == instructions, told.instructions
    chat = [{"role": "system", "content": instructions}, {"role": "user", "content": question}]
    assert told.usage.input_tokens == await prompt_tokens(context, chat), told.usage
    if context.strict:
        assert told.output_text == FAKE_ANSWER and told.status == "completed", told
        assert told.usage.input_tokens == words(question) + words(instructions), told.usage
        assert told.usage.output_tokens == 7, told.usage
    return {"text": told.output_text, "usage": told.usage.model_dump()}


async def responses_stream(context: Context) -> Report:
    events = await drain(
        context.client.responses.create(
            model=context.model, input="Say hello.", max_output_tokens=LIMIT, stream=True
        )
    )
    types = [event.type for event in events]
    assert types[0] == "response.created", types
    assert types[-1] in ("response.completed", "response.incomplete"), types
    for wanted in ("response.output_item.added", "response.content_part.added",
                   "response.output_text.done", "response.output_item.done"):  # fmt: skip
        assert wanted in types, (wanted, types)
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers)), numbers
    final = events[-1].response
    check_response(final, context)
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == final.output_text, (deltas, final.output_text)
    done = [event.text for event in events if event.type == "response.output_text.done"]
    assert done == [final.output_text], done
    if context.strict:
        assert final.output_text == FAKE_ANSWER, final
    return {"events": sorted(set(types)), "usage": final.usage.model_dump()}


async def not_found(call: Any) -> dict[str, Any]:
    try:
        await resolve(call())
    except openai.BadRequestError as exc:
        assert exc.code == "previous_response_not_found", exc.body
        assert exc.param == "previous_response_id", exc.body
        return {"status": exc.status_code, "code": exc.code}
    raise AssertionError("a previous_response_id that is not there was accepted")


async def responses_chain(context: Context) -> Report:
    first_input, second_input = "My name is Ada. Remember it.", "What is my name?"
    first = await create(context.client, context, input=first_input, temperature=0.0)
    check_response(first, context)
    second = await create(
        context.client, context, input=second_input, previous_response_id=first.id
    )
    check_response(second, context)
    assert second.previous_response_id == first.id, second.previous_response_id
    # the engine was given the first turn and its answer: more prompt than that turn had
    grown = first.usage.input_tokens + first.usage.output_tokens
    assert second.usage.input_tokens > grown, (first.usage, second.usage)
    if context.strict:
        expected = words(first_input) + words(FAKE_ANSWER) + words(second_input)
        assert second.usage.input_tokens == expected, (expected, second.usage)
    unstored = await create(context.client, context, input=first_input, store=False)
    check_response(unstored, context)
    refused = {
        "unknown": await not_found(lambda: create(
            context.client, context, input=second_input, previous_response_id="resp_unknown0")),
        "unstored": await not_found(lambda: create(
            context.client, context, input=second_input, previous_response_id=unstored.id)),
    }  # fmt: skip
    if "other_key" in context.extra:  # another user's responses are not found either
        other = other_client(context, context.extra["other_key"])
        try:
            refused["foreign"] = await not_found(lambda: create(
                other, context, input=second_input, previous_response_id=first.id))  # fmt: skip
        finally:
            await resolve(other.close())
    return {"first": first.usage.model_dump(), "second": second.usage.model_dump(), **refused}


async def responses_stored(context: Context) -> Report:
    """``responses.retrieve`` gives back what ``create`` answered, to its owner only;
    ``responses.delete`` removes it (then it is neither retrieved nor continued)."""
    made = await create(context.client, context, input="Say hello.")
    check_response(made, context)
    again = await resolve(context.client.responses.retrieve(made.id))
    assert (again.id, again.output_text, again.usage) == (made.id, made.output_text, made.usage)
    if "other_key" in context.extra:
        other = other_client(context, context.extra["other_key"])
        try:
            await expect_error(lambda: other.responses.retrieve(made.id), openai.NotFoundError)
        finally:
            await resolve(other.close())
    assert await resolve(context.client.responses.delete(made.id)) is None
    await expect_error(lambda: context.client.responses.retrieve(made.id), openai.NotFoundError)
    gone = await not_found(
        lambda: create(context.client, context, input="Hi", previous_response_id=made.id)
    )
    return {"deleted": gone}


async def responses_tool_forced(context: Context) -> Report:
    """``tool_choice`` naming a function: a ``function_call`` output item of it."""
    first = await create(
        context.client, context, input=weather_question(context.strict), tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=48,
        temperature=0,  # greedy: a sampled city may be none of the three (a flake seen in CI)
    )  # fmt: skip
    calls = [item for item in first.output if item.type == "function_call"]
    assert first.status == "completed" and len(calls) == 1, first
    call = calls[0]
    assert call.name == "get_weather" and call.call_id, call
    arguments = json.loads(call.arguments)
    assert arguments["city"] in ("Paris", "London", "Berlin"), arguments
    if context.strict:
        assert arguments == {"city": "Paris"}, arguments
    context.memo["response_call"] = {"response": first.id, "call_id": call.call_id}
    return {"arguments": arguments}


async def responses_tool_output(context: Context) -> Report:
    """The tool's answer as a ``function_call_output`` item: after the response that made
    the call (``previous_response_id``), or, where ``responses_tool_forced`` got none (it
    reports that), after the call given as an input item."""
    made = context.memo.get("response_call")
    output = {"type": "function_call_output", "output": "18 C, sunny"}
    if made:
        chained = {"previous_response_id": made["response"]}
        items: list[dict[str, Any]] = [{**output, "call_id": made["call_id"]}]
    else:
        chained = {}
        items = [
            {"role": "user", "content": weather_question(context.strict)},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city": "Paris"}'},
            {**output, "call_id": "call_1"},
        ]  # fmt: skip
    answer = await create(context.client, context, input=items, tools=[WEATHER], **chained)
    check_response(answer, context)
    if context.strict:
        assert answer.output_text == FAKE_ANSWER, answer
    return {"chained": bool(made), "status": answer.status}


RESPONSES_CHECKS = {
    "responses_create": responses_create,
    "responses_stream": responses_stream,
    "responses_chain": responses_chain,
    "responses_stored": responses_stored,
    "responses_tool_forced": responses_tool_forced,
    "responses_tool_output": responses_tool_output,
}

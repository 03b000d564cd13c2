"""``langchain-openai``'s ``ChatOpenAI`` against a running chatgate, run in ``.venv-clients``.

``python langchain_client.py BASE_URL API_KEY MODEL strict|loose [CHECK ...]
[async_checks=A,B]`` runs every check with the sync (``invoke``/``stream``) and the async
(``ainvoke``/``astream``) methods and prints one JSON line like ``openai_client.py``.
LangChain sends ``max_tokens`` as ``max_completion_tokens``, an assistant tool call with
``content: null``, and structured output as ``response_format: json_schema`` (its default
method): what its users hit first.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Literal

import langchain_openai
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel
from sdk_support import (
    Context,
    Report,
    emit,
    parse_arguments,
    run_checks,
    select,
    weather_question,
)

FAKE_ANSWER = "Paris is the capital of France."


@tool
def get_weather(city: Literal["Paris", "London", "Berlin"]) -> str:
    """The current weather of a city."""
    return f"18 C, sunny in {city}"


class CityAnswer(BaseModel):
    city: Literal["Paris", "London", "Berlin"]
    is_capital: bool


def chat(context: Context, **options: Any) -> ChatOpenAI:
    return ChatOpenAI(
        model=context.model, base_url=context.base_url + "/v1", api_key=context.api_key,
        max_retries=0, timeout=120, temperature=0.0, **options,
    )  # fmt: skip


async def invoke(context: Context, runnable: Any, value: Any) -> Any:
    if context.kind == "async":
        return await runnable.ainvoke(value)
    return runnable.invoke(value)


async def stream(context: Context, runnable: Any, value: Any) -> list[Any]:
    if context.kind == "async":
        return [chunk async for chunk in runnable.astream(value)]
    return list(runnable.stream(value))


def check_message(message: Any, context: Context, limit: int) -> dict[str, Any]:
    assert isinstance(message, AIMessage) and isinstance(message.content, str), message
    assert message.response_metadata["model_name"] == context.model, message.response_metadata
    usage = message.usage_metadata
    assert usage and usage["input_tokens"] > 0, message
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"], usage
    if not context.strict:  # the fake ignores limits: the test reads what it was sent
        assert usage["output_tokens"] <= limit, f"max_tokens={limit} was not applied: {usage}"
    return dict(usage)


async def invoke_max_tokens(context: Context) -> Report:
    text = "Write a long story about a dragon and a knight. (limit)"
    message = await invoke(context, chat(context, max_tokens=5), text)
    usage = check_message(message, context, 5)
    assert message.response_metadata["finish_reason"] in ("stop", "length"), message
    if context.strict:
        assert message.content == FAKE_ANSWER and usage["output_tokens"] == 7, message
    return {"usage": usage}


async def stream_usage(context: Context) -> Report:
    chunks = await stream(context, chat(context, max_tokens=8, stream_usage=True), "Say hello.")
    assert chunks, "no chunk"
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert whole.content == "".join(str(chunk.content) for chunk in chunks), whole
    message = AIMessage(content=whole.content, response_metadata=whole.response_metadata,
                        usage_metadata=whole.usage_metadata)  # fmt: skip
    usage = check_message(message, context, 8)
    if context.strict:
        assert whole.content == FAKE_ANSWER and usage["output_tokens"] == 7, whole
    return {"usage": usage}


async def tool_forced(context: Context) -> Report:
    """``bind_tools(..., tool_choice="get_weather")``: a call of that tool, whatever the model."""
    history: list[BaseMessage] = [HumanMessage(weather_question(context.strict))]
    forced = chat(context, max_tokens=48).bind_tools([get_weather], tool_choice="get_weather")
    called = await invoke(context, forced, history)
    assert isinstance(called, AIMessage) and len(called.tool_calls) == 1, called
    call = called.tool_calls[0]
    assert call["name"] == "get_weather" and call["id"], call
    assert call["args"]["city"] in ("Paris", "London", "Berlin"), call
    if context.strict:
        assert call["args"] == {"city": "Paris"}, call
    context.memo["called"] = called
    return {"args": call["args"]}


async def tool_round_trip(context: Context) -> Report:
    """The call (``tool_forced``'s, or one like it where that failed: it reports that), the
    tool's ``ToolMessage`` and a final answer: LangChain sends the call with ``content: null``."""
    called = context.memo.get("called") or AIMessage(
        content="", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}]
    )
    result = get_weather.invoke(called.tool_calls[0])  # a ToolMessage answering this call
    assert isinstance(result, ToolMessage), result
    history = [HumanMessage(weather_question(context.strict)), called, result]
    final = await invoke(context, chat(context, max_tokens=8).bind_tools([get_weather]), history)
    check_message(final, context, 8)
    assert final.response_metadata["finish_reason"] in ("stop", "length", "tool_calls"), final
    if context.strict:
        assert final.content == FAKE_ANSWER, final
    return {"used_the_forced_call": "called" in context.memo}


async def structured_output(context: Context) -> Report:
    structured = chat(context, max_tokens=48).with_structured_output(CityAnswer)
    answer = await invoke(context, structured, "Which city is the capital of France?")
    assert isinstance(answer, CityAnswer), answer
    return {"answer": answer.model_dump()}


async def responses_api(context: Context) -> Report:
    """``use_responses_api`` with ``use_previous_response_id``: the second turn sends only
    the new message and the first answer's id."""
    llm = chat(context, max_tokens=16, use_responses_api=True, use_previous_response_id=True)
    history: list[BaseMessage] = [HumanMessage("My name is Ada. Remember it.")]
    first = await invoke(context, llm, history)
    assert isinstance(first, AIMessage), first
    assert first.response_metadata["id"].startswith("resp_"), first.response_metadata
    history += [first, HumanMessage("What is my name?")]
    second = await invoke(context, llm, history)
    assert isinstance(second, AIMessage) and second.usage_metadata, second
    before, after = first.usage_metadata, second.usage_metadata
    assert before and after["input_tokens"] > before["input_tokens"] + before["output_tokens"], (
        before,
        after,
    )
    return {"first": dict(before), "second": dict(after)}


CHECKS = {
    "invoke_max_tokens": invoke_max_tokens,
    "stream_usage": stream_usage,
    "tool_forced": tool_forced,
    "tool_round_trip": tool_round_trip,
    "structured_output": structured_output,
    "responses_api": responses_api,
}


async def main() -> None:
    args = parse_arguments(sys.argv[1:])
    checks = {"sync": select(CHECKS, args.only), "async": select(CHECKS, args.only)}
    if "async_checks" in args.extra:  # the async client's transport, not every feature again
        checks["async"] = select(CHECKS, args.extra["async_checks"].split(","))
    report: dict[str, Any] = {"version": langchain_openai.__version__}
    for kind in ("sync", "async"):
        context = Context(
            None, kind, args.base_url, args.api_key, args.model, args.strict, args.extra
        )
        report[kind] = await run_checks(checks[kind], context)
    emit(report)


if __name__ == "__main__":
    asyncio.run(main())

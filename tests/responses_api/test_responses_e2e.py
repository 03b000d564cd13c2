"""``/v1/responses`` end to end: the openai SDK (the gateway's dev dependency) against
``chatgate serve`` with the real embedded llama.cpp engine. A 135M model's words are not
the test; the shapes the SDK parses, the limits applied and the usage rows are."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from openai import AsyncOpenAI, NotFoundError
from openai.types.responses import (
    FunctionToolParam,
    Response,
    ResponseInputParam,
)

from chatgate.engines.runtime.embedded import (
    EngineSetupError,
    locate_llama_server,
    locate_smollm2_gguf,
)
from tests.e2e.harness import ENGINE_NAME, Served, serve_env
from tests.helpers import free_port, missing

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather of a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": True,
}


@pytest_asyncio.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    try:
        locate_smollm2_gguf()
        locate_llama_server()
    except EngineSetupError as exc:
        missing(str(exc))
    data_dir = tmp_path_factory.mktemp("responses-e2e")
    port = free_port()
    instance = Served(data_dir, port, serve_env(data_dir, port, None))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.mark.e2e
@pytest.mark.timeout(600)
async def test_responses_with_the_embedded_engine(served: Served) -> None:
    key = served.cli("keys", "create", "--user", "admin", "--name", "responses").split()[-1]
    async with AsyncOpenAI(base_url=served.url + "/v1", api_key=key, max_retries=0) as client:
        first = await client.responses.create(
            model=ENGINE_NAME,
            instructions="You are terse.",
            input="What is the capital of France?",
            max_output_tokens=16,
            temperature=0.0,
        )
        assert first.status in ("completed", "incomplete") and first.output_text
        assert first.usage is not None and 0 < first.usage.output_tokens <= 16
        assert first.usage.input_tokens > 0
        # streamed, chained on the first
        events = []
        stream = await client.responses.create(
            model=ENGINE_NAME, input="And of Italy?", previous_response_id=first.id,
            max_output_tokens=16, stream=True,
        )  # fmt: skip
        async for event in stream:
            events.append(event)
        kinds = [event.type for event in events]
        assert kinds[:2] == ["response.created", "response.in_progress"]
        assert kinds[-1] in ("response.completed", "response.incomplete")
        assert [event.sequence_number for event in events] == list(range(len(events)))
        final = events[-1].response  # type: ignore[union-attr]
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert final.output_text == deltas and final.previous_response_id == first.id
        assert final.usage is not None and final.usage.output_tokens <= 16
        # the chain carried the first turn: a longer prompt than the first one's
        assert final.usage.input_tokens > first.usage.input_tokens
        again = await client.responses.retrieve(final.id)
        assert again.id == final.id and again.output_text == final.output_text
        await client.responses.delete(final.id)
        with pytest.raises(NotFoundError):
            await client.responses.retrieve(final.id)
        called = await tool_round_trip(client)
    # one usage row each, with the counts the SDK was given (the engine's own)
    exported = served.cli("usage", "export", "--route", "v1.responses", "--format", "jsonl")
    rows = sorted((json.loads(line) for line in exported.splitlines()), key=lambda r: r["id"])
    assert [row["status"] for row in rows] == ["ok"] * 4
    counted = [(row["prompt_tokens"], row["completion_tokens"]) for row in rows]
    assert counted[:2] == [
        (first.usage.input_tokens, first.usage.output_tokens),
        (final.usage.input_tokens, final.usage.output_tokens),
    ]
    assert called.usage is not None
    assert counted[2] == (called.usage.input_tokens, called.usage.output_tokens)


async def tool_round_trip(client: AsyncOpenAI) -> Response:
    """Tools through the real engine. A required call is enforced by a grammar
    (``engines.upstream.forced_tools``), but SmolLM2 writes one in ~37 tokens and 16 cut it, so it
    comes back as text: the first leg checks the shape only (tests/clients checks a whole
    forced call). The second sends a call and its output as input items: the engine's
    template must take the translated tool turn."""
    first = await client.responses.create(
        model=ENGINE_NAME, input="What is the weather in Paris?", tools=[WEATHER],
        tool_choice="required", max_output_tokens=16,
    )  # fmt: skip
    assert first.status in ("completed", "incomplete") and first.output, first
    assert all(item.type in ("message", "function_call") for item in first.output)
    history: ResponseInputParam = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "18 C"},
    ]  # fmt: skip
    second = await client.responses.create(
        model=ENGINE_NAME, input=history, tools=[WEATHER], max_output_tokens=16
    )
    assert second.status in ("completed", "incomplete") and second.output_text, second
    assert first.usage is not None and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens  # the call and its output
    return first

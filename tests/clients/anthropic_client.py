"""The official ``anthropic`` SDK against a running chatgate, run in ``.venv-clients``
(the SDK's own venv: its pins must not move the gateway's).

``python anthropic_client.py BASE_URL API_KEY MODEL strict|loose`` drives messages.create,
messages.stream, count_tokens, a tool_use → tool_result round trip and a 401, checks the
shapes the SDK parsed, and prints one JSON line of what it saw (for the test to compare
with the usage rows). ``strict``: the fake engine, whose answers are known; ``loose``: a
real small model, whose words (and whether it calls the tool) are not the test.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anthropic

WEATHER = {
    "name": "get_weather",
    "description": "The current weather of a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use"}


def check_message(message: Any, model: str) -> None:
    assert message.type == "message" and message.role == "assistant", message
    assert message.id.startswith("msg_"), message.id
    assert message.model == model, message.model
    assert message.stop_reason in STOP_REASONS, message.stop_reason
    assert message.usage.input_tokens > 0 and message.usage.output_tokens >= 0, message.usage
    for block in message.content:
        assert block.type in ("text", "tool_use"), block


def create(client: anthropic.Anthropic, model: str, strict: bool) -> dict[str, Any]:
    message = client.messages.create(
        model=model,
        max_tokens=16,
        system="You are terse.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stop_sequences=["\n\n\n"],
        # Top-level in the SDKs most clients run; this release sends them as extra fields.
        extra_body={"temperature": 0.0, "top_k": 5},
    )
    check_message(message, model)
    assert message.content and message.content[0].type == "text"
    if strict:
        assert message.content[0].text == "Paris is the capital of France.", message.content
        assert message.stop_reason == "end_turn"
    else:
        assert message.usage.output_tokens <= 16, "max_tokens was not applied"
    return {"id": message.id, "usage": message.usage.model_dump()}


def stream(client: anthropic.Anthropic, model: str, strict: bool) -> dict[str, Any]:
    events: list[str] = []
    texts: list[str] = []
    with client.messages.stream(
        model=model, max_tokens=16, messages=[{"role": "user", "content": "Say hello."}]
    ) as live:
        for event in live:
            events.append(event.type)
            if event.type == "text":
                texts.append(event.text)
        final = live.get_final_message()
    check_message(final, model)
    assert events[0] == "message_start" and events[-1] == "message_stop", events
    assert "content_block_start" in events and "message_delta" in events, events
    assert final.content[0].type == "text" and final.content[0].text == "".join(texts)
    if strict:
        assert final.content[0].text == "Paris is the capital of France."
    return {"events": sorted(set(events)), "usage": final.usage.model_dump()}


def count_tokens(client: anthropic.Anthropic, model: str) -> dict[str, Any]:
    raw = client.messages.with_raw_response.count_tokens(
        model=model,
        system="You are terse.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    counted = raw.parse()
    assert counted.input_tokens > 0, counted
    source = raw.headers.get("x-token-count-source")
    assert source in ("engine", "estimate"), source
    return {"input_tokens": counted.input_tokens, "source": source}


def tool_round_trip(client: anthropic.Anthropic, model: str, strict: bool) -> dict[str, Any]:
    question = "What is the weather in Paris?" + (" [[tool_call=get_weather]]" if strict else "")
    first = client.messages.create(
        model=model,
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": question}],
    )
    check_message(first, model)
    calls = [block for block in first.content if block.type == "tool_use"]
    if strict:
        assert first.stop_reason == "tool_use" and len(calls) == 1, first
        assert calls[0].name == "get_weather" and calls[0].input == {"city": "Paris"}
    if calls:
        assert isinstance(calls[0].input, dict) and calls[0].id
        call = {"type": "tool_use", "id": calls[0].id, "name": calls[0].name,
                "input": calls[0].input}  # fmt: skip
    else:  # a small model may not call it: the round trip is still the client's to send
        call = {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                "input": {"city": "Paris"}}  # fmt: skip
    second = client.messages.create(
        model=model,
        max_tokens=32,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call["id"], "content": "18 C, sunny"}
            ]},
        ],
    )  # fmt: skip
    check_message(second, model)
    return {"called": bool(calls), "stop_reason": first.stop_reason, "answer": second.id}


def unauthorized(base_url: str, model: str) -> dict[str, Any]:
    client = anthropic.Anthropic(base_url=base_url, api_key="sk-cg-wrong", max_retries=0)
    try:
        client.messages.create(
            model=model, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
    except anthropic.AuthenticationError as exc:
        assert exc.status_code == 401
        assert isinstance(exc.body, dict) and exc.body["type"] == "error", exc.body
        assert exc.body["error"]["type"] == "authentication_error", exc.body
        return {"status": exc.status_code, "type": exc.body["error"]["type"]}
    raise AssertionError("a wrong key was accepted")


def main() -> None:
    base_url, api_key, model, mode = sys.argv[1:5]
    strict = mode == "strict"
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=120)
    seen = {
        "version": anthropic.__version__,
        "create": create(client, model, strict),
        "stream": stream(client, model, strict),
        "count_tokens": count_tokens(client, model),
        "tools": tool_round_trip(client, model, strict),
        "unauthorized": unauthorized(base_url, model),
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main()

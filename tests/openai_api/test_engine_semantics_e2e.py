"""The real embedded engine (llama.cpp's llama-server) through a real ``chatgate serve``:
structured output with a JSON schema, ``n`` = 2, and exact usage, streamed and not.

Model quality is not the test (a 135M model); shapes, limits and counts are. One server
for the module; every answer is a few tokens long, so the module stays well under a
minute once the engine is up.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest

from chatgate.engines.runtime.embedded import (
    EngineSetupError,
    locate_llama_server,
    locate_smollm2_gguf,
)
from tests.e2e.harness import ENGINE_NAME, Served, serve_env
from tests.helpers import free_port, missing, parse_sse

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 12},
        "sunny": {"type": "boolean"},
    },
    "required": ["city", "sunny"],
    "additionalProperties": False,
}
NO_END = {"2": -100}  # SmolLM2's end-of-turn token, banned: every answer runs to max_tokens


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    try:
        locate_smollm2_gguf()
        locate_llama_server()
    except EngineSetupError as exc:
        missing(str(exc))
    data_dir = tmp_path_factory.mktemp("engine-semantics")
    port = free_port()
    instance = Served(data_dir, port, serve_env(data_dir, port, None))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def key(served: Served) -> str:
    return served.cli("keys", "create", "--user", "admin", "--name", "semantics").split()[-1]


def post(served: Served, key: str, body: dict[str, Any]) -> tuple[httpx.Response, str]:
    request_id = f"sem-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id}
    body = {"model": ENGINE_NAME, **body}
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    response = httpx.post(
        served.url + "/v1/chat/completions", json=body, headers=headers, timeout=120
    )
    return response, request_id


def chunks_of(response: httpx.Response) -> list[dict[str, Any]]:
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]", response.text[-500:]
    return [e.data for e in events[:-1] if isinstance(e.data, dict)]


def streamed(response: httpx.Response) -> tuple[dict[int, str], dict[int, str], dict[str, Any]]:
    """Each choice's text and finish reason, and the one usage chunk's usage."""
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usages = []
    for chunk in chunks_of(response):
        if chunk.get("usage"):
            usages.append(chunk["usage"])
        for choice in chunk.get("choices") or []:
            index = choice["index"]
            texts[index] = texts.get(index, "") + (choice["delta"].get("content") or "")
            if choice.get("finish_reason"):
                finishes[index] = choice["finish_reason"]
    assert len(usages) == 1, usages
    return texts, finishes, usages[0]


@pytest.fixture(scope="module")
def admin(served: Served) -> str:
    """The admin's token, to read usage rows (one sign-in: hashing a password is slow)."""
    return served.token()


def usage_row(served: Served, admin: str, request_id: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin}"}
    rows = httpx.get(served.url + "/api/usage", headers=headers, timeout=30).json()["rows"]
    found = [row for row in rows if row["request_id"] == request_id]
    assert len(found) == 1, request_id
    return found[0]


def counts(usage: dict[str, Any]) -> tuple[int, int, int]:
    return usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]


# ------------------------------------------------------------------ structured output


@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_answers_parse_and_match(served: Served, key: str, stream: bool) -> None:
    schema = {"name": "weather", "schema": SCHEMA, "strict": True}
    response_format = {"type": "json_schema", "json_schema": schema}
    body = {
        "messages": [{"role": "user", "content": "The weather in Paris, as JSON."}],
        "response_format": response_format,
        "max_tokens": 60,
        "temperature": 0,
        "stream": stream,
    }
    response, _ = post(served, key, body)
    assert response.status_code == 200, response.text
    if stream:
        texts, finishes, _usage = streamed(response)
        text, finish = texts[0], finishes[0]
    else:
        choice = response.json()["choices"][0]
        text, finish = choice["message"]["content"], choice["finish_reason"]
    assert finish == "stop", text
    jsonschema.validate(json.loads(text), SCHEMA)


def test_a_schema_the_engine_cannot_use_is_its_400_without_internals(
    served: Served, key: str
) -> None:
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "bad", "schema": {"$ref": "#/nowhere"}}}  # fmt: skip
    body = {"messages": [{"role": "user", "content": "hi"}], "response_format": response_format,
            "max_tokens": 4}  # fmt: skip
    response, _ = post(served, key, body)
    assert 400 <= response.status_code < 500, response.text
    message = response.json()["error"]["message"]
    assert message and ".cpp" not in message and "/src/" not in message, message


# ------------------------------------------------------------------------------- n = 2


def test_two_answers_streamed_and_not(served: Served, key: str, admin: str) -> None:
    body = {"messages": [{"role": "user", "content": "Name a colour."}], "n": 2,
            "max_tokens": 6, "logit_bias": NO_END, "temperature": 0.8, "seed": 3}  # fmt: skip
    one, _ = post(served, key, {**body, "n": 1})
    prompt = one.json()["usage"]["prompt_tokens"]

    answer, answer_id = post(served, key, body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert [c["finish_reason"] for c in data["choices"]] == ["length", "length"]
    # Each answer is 6 tokens, the shared prompt counted once.
    assert counts(data["usage"]) == (prompt, 12, prompt + 12)

    stream, stream_id = post(served, key, {**body, "stream": True})
    assert stream.status_code == 200, stream.text
    texts, finishes, usage = streamed(stream)
    assert sorted(texts) == [0, 1] and all(texts.values())
    assert finishes == {0: "length", 1: "length"}
    assert counts(usage) == (prompt, 12, prompt + 12)
    for request_id in (answer_id, stream_id):
        row = usage_row(served, admin, request_id)
        assert (row["prompt_tokens"], row["completion_tokens"]) == (prompt, 12)


def test_more_answers_than_slots_is_a_400_naming_n(served: Served, key: str) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}], "n": 6, "max_tokens": 2}
    response, _ = post(served, key, body)  # the embedded engine has 5 slots
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "n"


# ------------------------------------------------------------------------- exact usage


def test_streamed_and_non_streamed_counts_are_the_engines_and_equal(
    served: Served, key: str, admin: str
) -> None:
    body = {
        "messages": [
            {"role": "system", "content": "You answer in one short sentence."},
            {"role": "user", "content": "Why is the sky blue? Explain it to a child."},
        ],
        "max_tokens": 12,
        "temperature": 0,
        "seed": 42,
        "logit_bias": NO_END,
    }
    answer, answer_id = post(served, key, body)
    assert answer.status_code == 200, answer.text
    stream, stream_id = post(served, key, {**body, "stream": True})
    assert stream.status_code == 200, stream.text
    _texts, _finishes, usage = streamed(stream)
    expected = counts(answer.json()["usage"])
    assert expected[1] == 12  # the engine's count of the answer it was held to
    assert counts(usage) == expected
    for request_id in (answer_id, stream_id):
        row = usage_row(served, admin, request_id)
        assert (row["prompt_tokens"], row["completion_tokens"]) == expected[:2]
    # The engine's tokenizer agrees (Anthropic's count_tokens asks it the same way).
    count = httpx.post(
        served.url + "/v1/messages/count_tokens",
        json={
            "model": ENGINE_NAME,
            "system": body["messages"][0]["content"],
            "messages": [body["messages"][1]],
        },  # fmt: skip
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        timeout=60,
    )
    assert count.status_code == 200, count.text
    assert count.json()["input_tokens"] == expected[0]

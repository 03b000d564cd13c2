"""End to end: `chatgate serve` as a subprocess with the real embedded llama.cpp engine,
on SQLite and on PostgreSQL, driven over HTTP, SSE and the official openai SDK."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from tests.conftest import PG_HOST, PG_PORT, create_pg_database, drop_pg_database
from tests.e2e.harness import ENGINE_NAME, Served, serve_env
from tests.helpers import SSEEvent, free_port, parse_sse, text_of

pytestmark = pytest.mark.e2e

# SmolLM2's end-of-turn token; biased away so an answer runs long enough to interrupt.
LONG_ANSWER = {"max_tokens": 400, "logit_bias": {"2": -100}}


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgres"])
async def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp(f"e2e-{request.param}")
    pg_name = await create_pg_database() if request.param == "postgres" else None
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{pg_name}" if pg_name else None
    instance = Served(data_dir, free_port(), serve_env(data_dir, free_port(), url))
    instance.port = int(instance.env["CHATGATE_PORT"])
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
        if pg_name:
            await drop_pg_database(pg_name)


def stream_chat(served: Served, token: str, body: dict[str, Any]) -> Iterator[SSEEvent]:
    """Events of POST /api/chat as they arrive."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream(
        "POST", served.url + "/api/chat", json=body, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200, response.read()
        buffer = ""
        for piece in response.iter_text():
            buffer += piece
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                yield from parse_sse(block + "\n\n")


def test_chat_answer_is_stored_and_survives_restart(served: Served) -> None:
    token = served.token()
    events = list(stream_chat(served, token, {"message": "What is the capital of France?"}))
    answer = text_of(events)
    assert answer.strip(), "SmolLM2 answered nothing"
    assert events[-1].event == "done" and events[-1].data["status"] == "complete"
    conversation_id = events[0].data["conversation_id"]
    headers = {"Authorization": f"Bearer {token}"}
    listed = httpx.get(served.url + "/api/conversations", headers=headers, timeout=60).json()
    assert conversation_id in [c["id"] for c in listed["conversations"]]

    served.stop()
    served.start()
    token = served.token()
    detail = httpx.get(
        served.url + f"/api/conversations/{conversation_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ).json()
    assert [(m["role"], m["status"]) for m in detail["messages"]] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert detail["messages"][0]["content"] == "What is the capital of France?"
    assert detail["messages"][1]["content"] == answer


def test_openai_sdk_with_cli_key_and_isolation(served: Served) -> None:
    key = served.cli("keys", "create", "--user", "admin", "--name", "sdk")
    assert key.startswith("sk-cg-")
    with openai.OpenAI(base_url=served.url + "/v1", api_key=key) as client:
        reply = client.chat.completions.create(
            model="default", messages=[{"role": "user", "content": "Say hello."}], max_tokens=24
        )
        assert reply.choices[0].message.content and reply.model == ENGINE_NAME
        assert reply.usage is not None and reply.usage.completion_tokens > 0
        stream = client.chat.completions.create(
            model=ENGINE_NAME,
            messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed.strip() and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    with openai.OpenAI(base_url=served.url + "/v1", api_key="sk-cg-wrong") as wrong_client:
        with pytest.raises(openai.AuthenticationError) as wrong:
            wrong_client.models.list()
    assert wrong.value.status_code == 401
    assert wrong.value.body["type"] == "authentication_error"  # type: ignore[index]

    served.cli("users", "add", "bob", "--password", "bob-password-1")
    admin_events = list(stream_chat(served, served.token(), {"message": "Hi", "max_tokens": 8}))
    conversation_id = admin_events[0].data["conversation_id"]
    bob = httpx.get(
        served.url + f"/api/conversations/{conversation_id}",
        headers={"Authorization": f"Bearer {served.token('bob', 'bob-password-1')}"},
        timeout=60,
    )
    assert bob.status_code == 404


def test_engine_killed_mid_stream(served: Served) -> None:
    token = served.token()
    body = {"message": "Write a very long story about a dragon.", **LONG_ANSWER}
    before = served.engine_state()
    events: list[SSEEvent] = []
    killed_at = None
    for event in stream_chat(served, token, body):
        events.append(event)
        if killed_at is None and len(text_of(events)) > 20:
            os.kill(before["pid"], signal.SIGKILL)
            killed_at = time.monotonic()
    assert killed_at is not None, "the answer ended before it could be interrupted"
    assert time.monotonic() - killed_at < 5, "terminal event must arrive within 5 s"
    assert [e.event for e in events[-2:]] == ["error", "done"]
    assert events[-1].data["status"] in ("error", "interrupted")
    detail = httpx.get(
        served.url + f"/api/conversations/{events[0].data['conversation_id']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ).json()
    assistant = detail["messages"][-1]
    assert assistant["status"] in ("error", "interrupted")
    assert assistant["content"] and assistant["content"] == text_of(events)

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        state = served.engine_state()
        if state["state"] == "ready" and state["pid"] not in (None, before["pid"]):
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"engine not restarted: {served.engine_state()}")
    assert state["restarts"] >= before["restarts"] + 1
    again = list(stream_chat(served, token, {"message": "Say yes.", "max_tokens": 8}))
    assert again[-1].data["status"] == "complete" and text_of(again).strip()


def test_reload_mid_answer_resumes_without_duplicates(served: Served) -> None:
    token = served.token()
    body = {"message": "Tell me a long story about the sea.", **LONG_ANSWER, "max_tokens": 120}
    seen: list[SSEEvent] = []
    for event in stream_chat(served, token, body):
        seen.append(event)
        if len(seen) >= 8:
            break  # the browser tab reloads: the connection is dropped here
    generation_id = seen[0].data["generation_id"]
    resumed = httpx.get(
        served.url + f"/api/chat/{generation_id}/stream",
        headers={"Authorization": f"Bearer {token}", "Last-Event-ID": str(seen[-1].id)},
        timeout=120,
    )
    rest = parse_sse(resumed.text)
    everything = seen + rest
    assert [e.id for e in everything] == list(range(1, len(everything) + 1))
    assert rest[-1].event == "done" and rest[-1].data["status"] == "complete"
    detail = httpx.get(
        served.url + f"/api/conversations/{seen[0].data['conversation_id']}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    ).json()
    assert detail["messages"][-1]["content"] == text_of(everything)


def test_oversized_request_heads_are_refused_by_the_server(served: Served) -> None:
    # `chatgate serve` runs uvicorn with CHATGATE_MAX_HEADER_BYTES (16 KiB): a 100 KB header
    # never reaches the app, and normal requests are unaffected.
    refused = httpx.get(served.url + "/health", headers={"X-Padding": "a" * 100_000}, timeout=30)
    assert refused.status_code == 431
    assert httpx.get(served.url + "/health", timeout=30).status_code == 200

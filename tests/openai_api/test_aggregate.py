"""Non-streamed /v1 answers are put together from a streamed engine request."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from chatgate.openai_api.aggregate import Aggregate
from tests.fakes.upstream import FakeUpstream, Recorded
from tests.helpers import Gateway


def test_chat_chunks_become_one_message_with_its_tool_calls_and_usage() -> None:
    answer = Aggregate(chat=True, model="m", request_id="r")
    start = {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    chunks = [
        {
            "id": "chatcmpl-9",
            "created": 7,
            "choices": [{"index": 0, "delta": {"role": "assistant"}}],
        },
        {"choices": [{"index": 0, "delta": {"tool_calls": [start]}}]},
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]},
                }
            ]
        },  # fmt: skip
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
                }
            ]
        },  # fmt: skip
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}},
    ]
    for chunk in chunks:
        answer.add(chunk)
    body = answer.response()
    assert body["id"] == "chatcmpl-9" and body["created"] == 7 and body["model"] == "m"
    (choice,) = body["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }  # fmt: skip
    ]
    assert body["usage"]["completion_tokens"] == 9


def test_several_choices_logprobs_and_the_legacy_shape() -> None:
    chat = Aggregate(chat=True, model="m", request_id="r")
    for index, word in ((0, "a"), (1, "b"), (0, "c"), (1, "d")):
        lp = {"content": [{"token": word, "logprob": -0.1}]}
        chat.add({"choices": [{"index": index, "delta": {"content": word}, "logprobs": lp}]})
    choices = chat.response()["choices"]
    assert [c["message"]["content"] for c in choices] == ["ac", "bd"]
    assert [t["token"] for t in choices[0]["logprobs"]["content"]] == ["a", "c"]
    legacy = Aggregate(chat=False, model="m", request_id="r")
    legacy.add({"choices": [{"index": 0, "text": "Hel"}]})
    legacy.add({"choices": [{"index": 0, "text": "lo", "finish_reason": "length"}]})
    body = legacy.response()
    assert body["object"] == "text_completion" and body["id"] == "cmpl-r"
    assert body["choices"] == [
        {"index": 0, "text": "Hello", "logprobs": None, "finish_reason": "length"}
    ]


async def test_a_non_streaming_client_gets_the_engines_usage(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            headers=account.key_headers,
            json={"model": "fake-model", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Paris is the capital of France."
    assert body["usage"]["completion_tokens"] == 7
    sent = upstream.requests[-1].payload
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_a_non_streaming_client_that_leaves_aborts_the_engine(
    gateway: Gateway, upstream: FakeUpstream
) -> None:
    account = await gateway.account()
    marker = f"left-{uuid.uuid4().hex[:8]}"
    prompt = f"[[chunks=200 delay=0.05]] {marker}"
    body = {"model": "fake-model", "messages": [{"role": "user", "content": prompt}]}

    def mine() -> list[Recorded]:
        return [r for r in upstream.requests if marker in str(r.payload)]

    async with gateway.client() as client:
        task = asyncio.create_task(
            client.post("/v1/chat/completions", headers=account.key_headers, json=body)
        )
        deadline = time.monotonic() + 30
        while not any(r.chunks_sent for r in mine()):
            assert time.monotonic() < deadline, "the engine never started"
            await asyncio.sleep(0.02)
        task.cancel()
        try:
            await task
        except (asyncio.CancelledError, httpx.HTTPError):
            pass
    (record,) = mine()
    deadline = time.monotonic() + 30
    while record.aborted_at is None:
        assert time.monotonic() < deadline, "the engine kept generating for a client that left"
        await asyncio.sleep(0.02)
    assert record.chunks_sent < 200

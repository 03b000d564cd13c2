"""Exact usage: the counts a client reads and the usage row holds are the engine's, alike
for a stream and a non-streamed answer of the same prompt. An engine that reports none
is asked to count with its tokenizer (vLLM's ``POST /tokenize`` here, as the fake serves
it). The real llama.cpp engine: test_engine_semantics_e2e.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from chatgate.db.models import RequestLog
from tests.fakes.upstream import DEFAULT_WORDS, usage_of
from tests.helpers import Account, Gateway, parse_sse

PROMPT = "count these five words [[no_usage]]"


@pytest.fixture
def tokenizer(gateway: Gateway) -> Iterator[None]:
    gateway.upstream.tokenize = True
    try:
        yield
    finally:
        gateway.upstream.tokenize = False


async def ask(
    gateway: Gateway, account: Account, stream: bool, prompt: str = PROMPT, **extra: Any
) -> dict[str, Any]:
    """The usage the client read, and the row's counts."""
    request_id = f"u-{uuid.uuid4().hex}"
    body = {"model": "fake-model", "stream": stream,
            "messages": [{"role": "user", "content": prompt}], **extra}  # fmt: skip
    if stream:
        body["stream_options"] = {"include_usage": True}
    async with gateway.client(headers=account.key_headers) as client:
        response = await client.post(
            "/v1/chat/completions", json=body, headers={"X-Request-ID": request_id}
        )
    assert response.status_code == 200, response.text
    if stream:
        chunks = [e.data for e in parse_sse(response.text) if isinstance(e.data, dict)]
        usage = [c["usage"] for c in chunks if c.get("usage")]
        assert len(usage) == 1
        client_usage = usage[0]
    else:
        client_usage = response.json()["usage"]
    async with gateway.state.sessionmaker() as db:
        rows = list(await db.scalars(select(RequestLog).where(RequestLog.request_id == request_id)))
    assert len(rows) == 1
    return {"client": client_usage, "row": (rows[0].prompt_tokens, rows[0].completion_tokens)}


@pytest.mark.usefixtures("tokenizer")
async def test_without_engine_usage_the_tokenizer_counts_both_alike(gateway: Gateway) -> None:
    account = await gateway.account()
    streamed = await ask(gateway, account, True)
    answered = await ask(gateway, account, False)
    # The fake's tokenizer: a token per word (the prompt: 4 words and the directive; the
    # answer "Paris is the capital of France.": 6 words in 7 chunks).
    expected = {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
    assert streamed["client"] == answered["client"] == expected
    assert streamed["row"] == answered["row"] == (5, 6)
    assert len(DEFAULT_WORDS) == 7  # what a count of chunks would have said


@pytest.mark.usefixtures("tokenizer")
async def test_several_answers_are_counted_each(gateway: Gateway) -> None:
    account = await gateway.account()
    streamed = await ask(gateway, account, True, n=2)
    answered = await ask(gateway, account, False, n=2)
    assert streamed["row"] == answered["row"] == (5, 12)
    assert streamed["client"]["completion_tokens"] == answered["client"]["completion_tokens"] == 12


async def test_without_a_tokenizer_both_count_chunks(gateway: Gateway) -> None:
    """The last resort (an engine with neither usage nor a tokenizer): a token per chunk
    and the prompt's estimate, still the same for both."""
    account = await gateway.account()
    streamed = await ask(gateway, account, True)
    answered = await ask(gateway, account, False)
    assert streamed["row"] == answered["row"]
    assert streamed["row"][1] == len(DEFAULT_WORDS)
    assert streamed["client"] == answered["client"]


async def test_engine_usage_is_passed_on_as_reported(gateway: Gateway) -> None:
    account = await gateway.account()
    prompt = "count these five words please"
    streamed = await ask(gateway, account, True, prompt)
    answered = await ask(gateway, account, False, prompt)
    expected = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    assert streamed["client"] == answered["client"] == expected
    assert streamed["row"] == answered["row"] == (5, 7)


@pytest.mark.usefixtures("tokenizer")
async def test_the_web_chat_counts_with_the_tokenizer_too(gateway: Gateway) -> None:
    account = await gateway.account()
    sent = len(gateway.upstream.requests)
    events, response = await gateway.chat(account, message=PROMPT)
    assert response.status_code == 200
    usage = next(e.data for e in events if e.event == "usage")
    payload = gateway.upstream.requests[sent].payload  # what the engine was asked
    prompt = usage_of(payload, [])["prompt_tokens"]  # the fake tokenizer's count of it
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (prompt, 6)

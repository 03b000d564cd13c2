"""``n`` > 1: every answer reaches the client (streamed with its index, or merged into the
non-streamed answer), usage counts every answer's tokens once and the shared prompt
once, whether the engine reports usage per answer (llama-server) or for all (vLLM), and
an ``n`` above what the engine can generate at once is a 400 naming ``n``, never a
silently shorter answer. The real llama.cpp engine: test_engine_semantics_e2e.py."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from chatgate.db.models import RequestLog
from chatgate.engines.upstream.stream import StreamStats
from chatgate.openai_api.aggregate import Aggregate
from tests.fakes.upstream import DEFAULT_WORDS
from tests.helpers import Account, Gateway, parse_sse

ANSWER = "".join(DEFAULT_WORDS)
PROMPT = "one two three"  # the fake counts a token per word


def body(n: int, stream: bool, directive: str = "", **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "n": n, "stream": stream,
            "messages": [{"role": "user", "content": f"{PROMPT} {directive}".strip()}],
            **extra}  # fmt: skip


async def post(gateway: Gateway, account: Account, payload: dict[str, Any]) -> tuple[Any, str]:
    request_id = f"n-{uuid.uuid4().hex}"
    async with gateway.client(headers=account.key_headers) as client:
        response = await client.post(
            "/v1/chat/completions", json=payload, headers={"X-Request-ID": request_id}
        )
    assert response.status_code == 200, response.text
    return response, request_id


async def row_of(gateway: Gateway, request_id: str) -> RequestLog:
    async with gateway.state.sessionmaker() as db:
        rows = list(await db.scalars(select(RequestLog).where(RequestLog.request_id == request_id)))
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("directive", ["", "[[usage_per_answer]]"])
async def test_two_answers_non_streamed(gateway: Gateway, directive: str) -> None:
    account = await gateway.account()
    response, request_id = await post(gateway, account, body(2, False, directive))
    data = response.json()
    assert [c["index"] for c in data["choices"]] == [0, 1]
    assert [c["message"]["content"] for c in data["choices"]] == [ANSWER, ANSWER]
    assert [c["finish_reason"] for c in data["choices"]] == ["stop", "stop"]
    prompt = len(f"{PROMPT} {directive}".split())
    expected = {"prompt_tokens": prompt, "completion_tokens": 2 * len(DEFAULT_WORDS),
                "total_tokens": prompt + 2 * len(DEFAULT_WORDS)}  # fmt: skip
    assert data["usage"] == expected
    row = await row_of(gateway, request_id)
    assert (row.prompt_tokens, row.completion_tokens) == (prompt, 2 * len(DEFAULT_WORDS))


@pytest.mark.parametrize("directive", ["", "[[usage_per_answer]]"])
async def test_two_answers_streamed(gateway: Gateway, directive: str) -> None:
    account = await gateway.account()
    payload = body(2, True, directive, stream_options={"include_usage": True})
    response, request_id = await post(gateway, account, payload)
    chunks = [e.data for e in parse_sse(response.text) if isinstance(e.data, dict)]
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] = texts.get(choice["index"], "") + (
                choice["delta"].get("content") or ""
            )
    assert texts == {0: ANSWER, 1: ANSWER}
    usages = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    prompt = len(f"{PROMPT} {directive}".split())
    assert len(usages) == 1  # one usage chunk, even where the engine sent one per answer
    assert (usages[0]["prompt_tokens"], usages[0]["completion_tokens"]) == (
        prompt,
        2 * len(DEFAULT_WORDS),
    )
    assert usages[0]["total_tokens"] == prompt + 2 * len(DEFAULT_WORDS)
    assert parse_sse(response.text)[-1].data == "[DONE]"
    row = await row_of(gateway, request_id)
    assert (row.prompt_tokens, row.completion_tokens) == (prompt, 2 * len(DEFAULT_WORDS))


async def test_n_above_the_engines_slots_is_a_400_naming_n(gateway: Gateway) -> None:
    account = await gateway.account()
    endpoint = gateway.state.registry.resolve("fake-model").endpoints[0]
    before, sent = endpoint.capacity, len(gateway.upstream.requests)
    endpoint.capacity = 2  # as llama-server's parallel slots
    try:
        async with gateway.client(headers=account.key_headers) as client:
            refused = await client.post("/v1/chat/completions", json=body(3, True))
            allowed = await client.post("/v1/chat/completions", json=body(2, False))
    finally:
        endpoint.capacity = before
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "n" and "at most 2" in error["message"]
    assert allowed.status_code == 200 and len(allowed.json()["choices"]) == 2
    assert len(gateway.upstream.requests) == sent + 1  # the refused one never left


def test_usage_reports_per_answer_add_up() -> None:
    """llama-server with n=2: a usage report per answer (the whole prompt in each)."""
    stats = StreamStats(choices=2)
    for index in (0, 1, 0, 1):
        stats.observe({"choices": [{"index": index, "delta": {"content": "ab"[index]}}]})
    stats.observe({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}})
    stats.observe({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
    assert (stats.prompt_tokens, stats.completion_tokens) == (9, 5)
    assert stats.texts() == ["aa", "bb"]


def test_one_usage_report_for_all_answers_is_kept() -> None:
    """vLLM with n=2 (and its running totals on content chunks, when asked for)."""
    stats = StreamStats(choices=2)
    running = {"prompt_tokens": 9, "completion_tokens": 1}
    stats.observe({"choices": [{"index": 1, "delta": {"content": "b"}}], "usage": running})
    stats.observe({"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 6}})
    late = {"prompt_tokens": 9, "completion_tokens": 2}
    stats.observe({"choices": [{"index": 0, "delta": {}}], "usage": late})
    assert (stats.prompt_tokens, stats.completion_tokens) == (9, 6)


def test_the_aggregate_keeps_every_choice_in_order() -> None:
    answer = Aggregate(True, "m", "r")
    for index, word, finish in ((1, "b", None), (0, "a", None), (1, "", "length"),
                                (0, "", "stop")):  # fmt: skip
        delta = {"content": word} if word else {}
        answer.add({"choices": [{"index": index, "delta": delta, "finish_reason": finish}]})
    choices = answer.response()["choices"]
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in choices] == [
        (0, "a", "stop"),
        (1, "b", "length"),
    ]

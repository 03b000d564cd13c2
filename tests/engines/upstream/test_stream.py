"""StreamStats: what the gateway learns from an engine's chunks."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.engines.upstream.stream import (
    StreamStats,
    estimate_prompt_tokens,
    estimate_text_tokens,
)
from tests.helpers import FakeClock


def chat_chunk(content: str | None = None, finish: str | None = None,
               role: str | None = None) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {"object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def text_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"object": "text_completion",
            "choices": [{"index": 0, "text": text, "finish_reason": finish}]}


def usage_chunk(prompt: Any, completion: Any) -> dict[str, Any]:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     "total_tokens": 0}}


def test_chat_stream_text_finish_and_counts(clock: FakeClock) -> None:
    stats = StreamStats(started=clock())
    assert stats.observe(chat_chunk(role="assistant", content="")) is None
    assert stats.first_token_at is None  # a role-only chunk is not a token
    clock.now += 0.25
    assert stats.observe(chat_chunk("Hel")) == "Hel"
    clock.now += 0.5
    assert stats.observe(chat_chunk("lo")) == "lo"
    assert stats.observe(chat_chunk(finish="stop")) is None
    clock.now += 0.25
    assert stats.text == "Hello"
    assert stats.finish_reason == "stop"
    assert stats.content_chunks == 2
    assert stats.ttft_ms == pytest.approx(250.0)
    assert stats.latency_ms() == pytest.approx(1000.0)
    assert stats.output_tokens() == 2  # counted: the engine sent no usage
    assert stats.input_tokens(fallback=17) == 17


def test_no_token_means_no_ttft(clock: FakeClock) -> None:
    stats = StreamStats(started=clock())
    stats.observe(chat_chunk(finish="length"))
    assert stats.ttft_ms is None
    assert stats.finish_reason == "length"
    assert stats.text == "" and stats.output_tokens() == 0


def test_engine_usage_wins_over_counting() -> None:
    stats = StreamStats()
    for word in ("a", "b", "c"):
        stats.observe(chat_chunk(word))
    stats.observe(chat_chunk(finish="stop"))
    assert stats.observe(usage_chunk(11, 42)) is None
    assert stats.output_tokens() == 42
    assert stats.input_tokens(fallback=1) == 11
    assert stats.text == "abc"


def test_usage_may_ride_on_a_content_chunk() -> None:
    stats = StreamStats()
    chunk = {**chat_chunk("x", finish="stop"), "usage": {"prompt_tokens": 3,
                                                         "completion_tokens": 1}}
    assert stats.observe(chunk) == "x"
    assert (stats.prompt_tokens, stats.completion_tokens, stats.finish_reason) == (3, 1, "stop")


def test_null_or_partial_usage_keeps_what_is_known() -> None:
    stats = StreamStats()
    stats.observe(usage_chunk(5, 6))
    stats.observe({**chat_chunk("x"), "usage": None})  # vLLM: usage null on other chunks
    stats.observe({"choices": [], "usage": {"completion_tokens": 9}})
    stats.observe(usage_chunk("many", None))
    assert (stats.prompt_tokens, stats.completion_tokens) == (5, 9)


def test_float_usage_is_truncated_to_int() -> None:
    stats = StreamStats()
    stats.observe(usage_chunk(3.0, 4.9))
    assert (stats.prompt_tokens, stats.completion_tokens) == (3, 4)


def test_legacy_completion_text_choices() -> None:
    stats = StreamStats()
    assert stats.observe(text_chunk("Once")) == "Once"
    assert stats.observe(text_chunk(" upon")) == " upon"
    assert stats.observe(text_chunk("", finish="length")) is None
    assert stats.text == "Once upon"
    assert stats.finish_reason == "length"
    assert stats.output_tokens() == 2
    assert stats.ttft_ms is not None


@pytest.mark.parametrize(
    "chunk",
    [
        {},
        {"choices": []},
        {"choices": None},
        {"choices": "nope"},
        {"choices": [{"index": 0, "delta": {}}]},
        {"choices": [{"index": 0, "delta": {"content": None}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"id": "t"}]}}]},
    ],
)
def test_chunks_without_text(chunk: dict[str, Any]) -> None:
    stats = StreamStats()
    assert stats.observe(chunk) is None
    assert stats.text == "" and stats.content_chunks == 0 and stats.first_token_at is None


def test_finish_reason_keeps_the_last_one() -> None:
    stats = StreamStats()
    stats.observe(chat_chunk("a", finish=None))
    stats.observe(chat_chunk(finish="length"))
    stats.observe(chat_chunk(finish=None))
    assert stats.finish_reason == "length"


def test_estimate_prompt_tokens() -> None:
    assert estimate_prompt_tokens([]) == 0
    assert estimate_prompt_tokens([{"role": "user", "content": "x" * 40}]) == 10 + 4
    messages = [{"role": "system", "content": "abcd"}, {"role": "user", "content": None},
                {"role": "user"}]
    assert estimate_prompt_tokens(messages) == 1 + 12


def test_estimate_text_tokens() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abc") == 1
    assert estimate_text_tokens("abcd") == 1
    assert estimate_text_tokens("abcde") == 2
    assert estimate_text_tokens("x" * 400) == 100

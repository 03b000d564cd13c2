"""A streamed engine answer put back together as the non-streamed response.

Non-streaming clients are answered from a streamed engine request: a client that leaves
aborts the engine's generation at once (llama.cpp does not notice a closed connection
while it builds a non-streamed answer: the next small request waited 8.7 s behind an
abandoned one), the time-to-first-token and idle timeouts apply instead of one total
limit, and the usage is the engine's own, as for streams.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Choice:
    index: int
    parts: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    logprobs: dict[str, list[Any]] = field(default_factory=dict)
    finish_reason: str | None = None


@dataclass
class Aggregate:
    chat: bool  # chat.completion, else the legacy text_completion
    model: str
    request_id: str
    id: str | None = None
    created: int | None = None
    fingerprint: str | None = None
    usage: dict[str, Any] | None = None
    choices: dict[int, _Choice] = field(default_factory=dict)

    def add(self, chunk: dict[str, Any]) -> None:
        self.id = self.id or _str(chunk.get("id"))
        self.created = self.created or _int(chunk.get("created"))
        self.fingerprint = self.fingerprint or _str(chunk.get("system_fingerprint"))
        if isinstance(chunk.get("usage"), dict):
            # The last report as sent; with several answers llama-server sends one per
            # answer, and ``service.complete`` puts in the counts added up (StreamStats).
            self.usage = chunk["usage"]
        for raw in chunk.get("choices") or []:
            if isinstance(raw, dict):
                self._add_choice(raw)

    def _add_choice(self, raw: dict[str, Any]) -> None:
        index = _int(raw.get("index")) or 0
        choice = self.choices.setdefault(index, _Choice(index))
        raw_delta = raw.get("delta")
        delta: dict[str, Any] = raw_delta if isinstance(raw_delta, dict) else {}
        text = delta.get("content") if "delta" in raw else raw.get("text")
        if isinstance(text, str):
            choice.parts.append(text)
        if isinstance(delta.get("reasoning_content"), str):
            choice.reasoning.append(delta["reasoning_content"])
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                _merge_call(choice.tool_calls, call)
        logprobs = raw.get("logprobs")
        if isinstance(logprobs, dict):
            for key, value in logprobs.items():
                if isinstance(value, list):
                    choice.logprobs.setdefault(key, []).extend(value)
        if raw.get("finish_reason"):
            choice.finish_reason = str(raw["finish_reason"])

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id or f"{'chatcmpl' if self.chat else 'cmpl'}-{self.request_id}",
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self.created or int(time.time()),
            "model": self.model,
            "choices": [self._choice(c) for _, c in sorted(self.choices.items())],
        }
        if self.fingerprint is not None:
            body["system_fingerprint"] = self.fingerprint
        if self.usage is not None:
            body["usage"] = self.usage
        return body

    def _choice(self, choice: _Choice) -> dict[str, Any]:
        logprobs = choice.logprobs or None
        if not self.chat:
            text = "".join(choice.parts)
            return {"index": choice.index, "text": text, "logprobs": logprobs,
                    "finish_reason": choice.finish_reason}  # fmt: skip
        calls = [choice.tool_calls[i] for i in sorted(choice.tool_calls)]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(choice.parts) if choice.parts or not calls else None,
        }
        if calls:
            message["tool_calls"] = calls
        if choice.reasoning:
            message["reasoning_content"] = "".join(choice.reasoning)
        return {"index": choice.index, "message": message, "logprobs": logprobs,
                "finish_reason": choice.finish_reason}  # fmt: skip


def answer_texts(choices: list[Any]) -> list[str]:
    """Each choice's text in a non-streamed answer (chat ``message.content`` or ``text``)."""
    texts: list[str] = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        texts.append(text if isinstance(text, str) else "")
    return texts


def _merge_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    """Tool calls stream as pieces: id, type and name first, the arguments in parts."""
    index = _int(delta.get("index")) or 0
    call = calls.setdefault(
        index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    if delta.get("type"):
        call["type"] = delta["type"]
    function = delta.get("function")
    if isinstance(function, dict):
        if isinstance(function.get("name"), str):
            call["function"]["name"] += function["name"]
        if isinstance(function.get("arguments"), str):
            call["function"]["arguments"] += function["arguments"]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None

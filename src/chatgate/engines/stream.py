"""What the gateway learns from an engine's chunk stream: text, timing, usage."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class StreamStats:
    started: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    text_parts: list[str] = field(default_factory=list)
    content_chunks: int = 0
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    on_gap: Callable[[float], None] | None = None  # inter-token latency, per content chunk
    last_token_at: float | None = None

    def observe(self, chunk: dict[str, Any]) -> str | None:
        """Account one parsed chunk; returns its text delta, if any."""
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = _int(usage.get("prompt_tokens"), self.prompt_tokens)
            self.completion_tokens = _int(usage.get("completion_tokens"), self.completion_tokens)
        choices = chunk.get("choices")
        if not choices or not isinstance(choices, list):
            return None
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta")
        # chat chunks carry delta.content; legacy /v1/completions chunks carry text
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if not text:
            return None
        now = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = now
        elif self.on_gap is not None and self.last_token_at is not None:
            self.on_gap(now - self.last_token_at)
        self.last_token_at = now
        self.text_parts.append(text)
        self.content_chunks += 1
        return str(text)

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def ttft_ms(self) -> float | None:
        if self.first_token_at is None:
            return None
        return (self.first_token_at - self.started) * 1000

    def latency_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000

    def output_tokens(self) -> int:
        """The engine's count; else one token per content chunk (how engines stream)."""
        return self.completion_tokens if self.completion_tokens is not None else self.content_chunks

    def input_tokens(self, fallback: int) -> int:
        return self.prompt_tokens if self.prompt_tokens is not None else fallback


def _int(value: Any, default: int | None) -> int | None:
    return int(value) if isinstance(value, int | float) else default


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Rough count (about 4 characters a token plus framing) for engines that report none."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // 4 + 4 * len(messages)


def estimate_text_tokens(text: str) -> int:
    """Rough count (about 4 characters a token) of a text the engine did not count."""
    return (len(text) + 3) // 4

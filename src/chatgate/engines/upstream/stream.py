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
    # Answers the request asked for (OpenAI's ``n``). With several, llama-server sends one
    # usage report per answer (each with the whole prompt, only that answer's tokens) where
    # vLLM sends one for all: reports are then added up, the shared prompt counted once.
    choices: int = 1
    reports: int = 0  # usage reports seen (chunks with usage and no choices)
    choice_texts: dict[int, list[str]] = field(default_factory=dict)  # only when choices > 1

    def observe(self, chunk: dict[str, Any]) -> str | None:
        """Account one parsed chunk; returns its text delta, if any."""
        usage = chunk.get("usage")
        choices = chunk.get("choices")
        if isinstance(usage, dict):
            self._usage(usage, report=not choices)
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
        if self.choices > 1:
            index = choice.get("index")
            self.choice_texts.setdefault(index if isinstance(index, int) else 0, []).append(text)
        return str(text)

    def _usage(self, usage: dict[str, Any], report: bool) -> None:
        prompt = _int(usage.get("prompt_tokens"), None)
        completion = _int(usage.get("completion_tokens"), None)
        if self.choices > 1 and report:
            # One report per answer (llama-server) or one for all (vLLM): add them up.
            self.reports += 1
            if self.reports > 1:
                self.prompt_tokens = max(self.prompt_tokens or 0, prompt or 0)
                self.completion_tokens = (self.completion_tokens or 0) + (completion or 0)
                return
        elif self.choices > 1 and self.reports:
            return  # running totals on content chunks: the reports are final
        self.prompt_tokens = prompt if prompt is not None else self.prompt_tokens
        self.completion_tokens = completion if completion is not None else self.completion_tokens

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def texts(self) -> list[str]:
        """Each answer's text (one unless the request asked for several)."""
        if self.choices <= 1:
            return [self.text]
        return ["".join(parts) for _, parts in sorted(self.choice_texts.items())]

    @property
    def has_usage(self) -> bool:
        """Whether the engine reported its own counts (else they are to be counted)."""
        return self.prompt_tokens is not None and self.completion_tokens is not None

    def usage(self, prompt_fallback: int = 0) -> dict[str, int]:
        """The usage object as OpenAI writes it."""
        prompt, completion = self.input_tokens(prompt_fallback), self.output_tokens()
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

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
    """Rough count (about 4 characters a token plus framing): the last resort when neither
    the engine's usage nor its tokenizer (``engines.upstream.tokenize``) gave a count."""
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // 4 + 4 * len(messages)


def estimate_text_tokens(text: str) -> int:
    """Rough count (about 4 characters a token): the last resort, as above."""
    return (len(text) + 3) // 4

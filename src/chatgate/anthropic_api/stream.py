"""OpenAI chat-completion chunks → Anthropic Messages events, and the whole message.

One translator serves both kinds of client: a streaming one gets the events as the
engine's chunks arrive; a non-streaming one gets ``message()``, built from the same
blocks (the engine request is streamed either way). Anthropic's event order:
``message_start``, ``ping``, per content block ``content_block_start`` / ``…_delta`` /
``…_stop`` (text: ``text_delta``; tool calls: ``input_json_delta``), then
``message_delta`` (stop_reason, usage) and ``message_stop``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatgate.anthropic_api.translate import error_body, stop_reason
from chatgate.engines.upstream.stream import StreamStats
from chatgate.errors import APIError

Event = tuple[str, dict[str, Any]]


def encode(events: list[Event]) -> bytes:
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        for name, data in events
    )


def error_event(status: int, message: str) -> Event:
    return "error", error_body(status, message)


@dataclass
class MessageTranslator:
    model: str
    input_estimate: int  # for message_start: the engine's count arrives with the last chunk
    stop_sequences: list[str] | None
    stats: StreamStats = field(default_factory=StreamStats)
    id: str = field(default_factory=lambda: f"msg_{uuid.uuid4().hex}")
    blocks: list[dict[str, Any]] = field(default_factory=list)
    open_block: int | None = None  # index of the block whose deltas are being sent
    tool_blocks: dict[int, int] = field(default_factory=dict)  # OpenAI tool index → block
    tool_arguments: dict[int, list[str]] = field(default_factory=dict)  # block → JSON parts
    matched_stop: Any = None  # vLLM's choice.stop_reason: the stop string that matched
    usage: tuple[int, int] = (0, 0)  # (input, output) tokens, as in the usage row
    outcome: APIError | None = None  # how the engine stream failed, if it did

    def start(self) -> list[Event]:
        message = {**self._shell(), "usage": {"input_tokens": self.input_estimate,
                                              "output_tokens": 0}}  # fmt: skip
        return [("message_start", {"type": "message_start", "message": message}),
                ("ping", {"type": "ping"})]  # fmt: skip

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """The events for one engine chunk (it is also accounted in ``stats``)."""
        self.stats.observe(chunk)
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        choice = choices[0]
        if choice.get("stop_reason") is not None:
            self.matched_stop = choice["stop_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return []
        events: list[Event] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            events += self._text(text)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                events += self._tool_call(call)
        return events

    def finish(self, input_tokens: int, output_tokens: int) -> list[Event]:
        """The closing events, with the engine's counts (those of the usage row)."""
        events = self._close()
        delta = {"stop_reason": self.stop_reason, "stop_sequence": self.stop_sequence}
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def message(self, input_tokens: int, output_tokens: int) -> dict[str, Any]:
        """The whole answer, as a non-streamed ``/v1/messages`` returns it."""
        for index, parts in self.tool_arguments.items():
            self.blocks[index]["input"] = _arguments("".join(parts))
        return {
            **self._shell(),
            "content": self.blocks,
            "stop_reason": self.stop_reason,
            "stop_sequence": self.stop_sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }

    @property
    def stop_reason(self) -> str:
        if self.tool_blocks and self.stats.finish_reason == "stop":
            return "tool_use"  # llama.cpp may finish a tool call with "stop"
        return stop_reason(self.stats.finish_reason, self.matched_stop, self.stop_sequences)

    @property
    def stop_sequence(self) -> str | None:
        return self.matched_stop if self.stop_reason == "stop_sequence" else None

    def _shell(self) -> dict[str, Any]:
        return {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": None, "stop_sequence": None}  # fmt: skip

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open_block is None or self.blocks[self.open_block]["type"] != "text":
            events += self._open({"type": "text", "text": ""})
        assert self.open_block is not None
        self.blocks[self.open_block]["text"] += text
        delta = {"type": "text_delta", "text": text}
        events.append(("content_block_delta", _delta(self.open_block, delta)))
        return events

    def _tool_call(self, call: dict[str, Any]) -> list[Event]:
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        assert isinstance(function, dict)
        position = call.get("index", 0)
        events: list[Event] = []
        if position not in self.tool_blocks:
            tool_id = call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}"
            name = function.get("name") or ""
            block: dict[str, Any] = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
            events += self._open(block)
            assert self.open_block is not None
            self.tool_blocks[position] = self.open_block
            self.tool_arguments[self.open_block] = []
        index = self.tool_blocks[position]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self.tool_arguments[index].append(arguments)
            delta = {"type": "input_json_delta", "partial_json": arguments}
            events.append(("content_block_delta", _delta(index, delta)))
        return events

    def _open(self, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self.open_block = len(self.blocks)
        self.blocks.append(block)
        start = {"type": "content_block_start", "index": self.open_block, "content_block": block}
        # A copy: the block keeps growing, the event must show it empty.
        events.append(("content_block_start", orjson.loads(orjson.dumps(start))))
        return events

    def _close(self) -> list[Event]:
        if self.open_block is None:
            return []
        index, self.open_block = self.open_block, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _arguments(text: str) -> dict[str, Any]:
    """A tool call's input: the engine's JSON object (an engine that produced no valid
    object, which a small model may, gives ``{}`` rather than a shape the SDKs reject)."""
    try:
        value = orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}

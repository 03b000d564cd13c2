"""OpenAI chat-completion chunks → Responses API events, and the whole response object.

One translator serves both kinds of client: a streaming one gets the events as the
engine's chunks arrive; a non-streaming one gets ``response()``, built from the same
output items (the engine request is streamed either way). The order OpenAI sends, each
event numbered by ``sequence_number``: ``response.created``, ``response.in_progress``;
per output item ``response.output_item.added``, then for a message
``response.content_part.added``, ``response.output_text.delta``…,
``response.output_text.done``, ``response.content_part.done``, and for a function call
``response.function_call_arguments.delta``…, ``…arguments.done``; then
``response.output_item.done``; last ``response.completed`` (``response.incomplete`` when
``max_output_tokens`` cut the answer, ``response.failed`` when the engine failed).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatgate.engines.upstream.stream import StreamStats
from chatgate.errors import APIError

Event = dict[str, Any]
# finish_reason → incomplete_details.reason (anything else completes the response)
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def encode(events: list[Event]) -> bytes:
    return b"".join(
        b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
        for event in events
    )


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass
class ResponseTranslator:
    model: str
    echo: dict[str, Any]  # the request's settings, repeated in every response object
    stats: StreamStats = field(default_factory=StreamStats)
    id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    output: list[dict[str, Any]] = field(default_factory=list)
    open_item: int | None = None  # index of the output item whose deltas are being sent
    calls: dict[int, int] = field(default_factory=dict)  # OpenAI tool index → output index
    sequence: int = 0
    usage: tuple[int, int] = (0, 0)  # (input, output) tokens, as in the usage row
    outcome: APIError | None = None  # how the engine stream failed, if it did
    result: dict[str, Any] | None = None  # the final response object, once finished

    def start(self) -> list[Event]:
        shell = self.response("in_progress", None)
        return [self._event("response.created", response=shell),
                self._event("response.in_progress", response=shell)]  # fmt: skip

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """The events for one engine chunk (it is also accounted in ``stats``)."""
        self.stats.observe(chunk)
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return []
        delta = choices[0].get("delta")
        if not isinstance(delta, dict):
            return []
        events: list[Event] = []
        text = delta.get("content")
        if isinstance(text, str) and text:
            events += self._text(text)
        calls = delta.get("tool_calls")
        for call in calls if isinstance(calls, list) else []:
            if isinstance(call, dict):
                events += self._call(call)
        return events

    def finish(self) -> list[Event]:
        """The closing events, with the engine's counts (``usage``, those of the row)."""
        if not self.output:  # no text, no call: an empty message, as OpenAI answers
            events = self._open_message()
        else:
            events = []
        status = self.status
        events += self._close("incomplete" if status == "incomplete" else "completed")
        name = "response.completed" if status == "completed" else "response.incomplete"
        self.result = self.response(status, self.usage)
        return [*events, self._event(name, response=self.result)]

    def failed(self, error: APIError) -> list[Event]:
        """``response.failed``: the engine failed after the stream began."""
        self._close("incomplete", emit=False)
        body = self.response("failed", self.usage)
        body["error"] = {"code": "server_error", "message": error.message}
        self.result = body
        return [self._event("response.failed", response=body)]

    @property
    def status(self) -> str:
        return "incomplete" if self.stats.finish_reason in INCOMPLETE else "completed"

    def response(self, status: str, usage: tuple[int, int] | None) -> dict[str, Any]:
        """The response object (the lifecycle events carry it, GET returns it)."""
        reason = INCOMPLETE.get(self.stats.finish_reason or "")
        body: dict[str, Any] = {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": reason} if status == "incomplete" else None,
            "model": self.model,
            "output": orjson.loads(orjson.dumps(self.output)),  # a copy: items still grow
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "truncation": "disabled",
            "usage": _usage(*usage) if usage is not None else None,
            **self.echo,
        }
        return body

    def _event(self, kind: str, /, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _text(self, text: str) -> list[Event]:
        events: list[Event] = []
        if self.open_item is None or self.output[self.open_item]["type"] != "message":
            events += self._open_message()
        assert self.open_item is not None
        item = self.output[self.open_item]
        item["content"][0]["text"] += text
        events.append(self._event("response.output_text.delta", item_id=item["id"],
                                  output_index=self.open_item, content_index=0, delta=text,
                                  logprobs=[]))  # fmt: skip
        return events

    def _open_message(self) -> list[Event]:
        events = self._close("completed")
        item: dict[str, Any] = {"id": new_id("msg"), "type": "message",
                                "status": "in_progress", "role": "assistant",
                                "content": []}  # fmt: skip
        events += self._open(item)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append(self._event("response.content_part.added", item_id=item["id"],
                                  output_index=self.open_item, content_index=0,
                                  part=dict(part)))  # fmt: skip
        item["content"].append(part)
        return events

    def _call(self, call: dict[str, Any]) -> list[Event]:
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        assert isinstance(function, dict)
        position = call.get("index", 0)
        events: list[Event] = []
        if position not in self.calls:
            events += self._close("completed")
            item: dict[str, Any] = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name") or "",
            }
            events += self._open(item)
            assert self.open_item is not None
            self.calls[position] = self.open_item
        index = self.calls[position]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            self.output[index]["arguments"] += arguments
            events.append(self._event("response.function_call_arguments.delta",
                                      item_id=self.output[index]["id"], output_index=index,
                                      delta=arguments))  # fmt: skip
        return events

    def _open(self, item: dict[str, Any]) -> list[Event]:
        self.open_item = len(self.output)
        self.output.append(item)
        added = orjson.loads(orjson.dumps(item))  # the event shows it as it is now
        return [self._event("response.output_item.added", output_index=self.open_item,
                            item=added)]  # fmt: skip

    def _close(self, status: str, emit: bool = True) -> list[Event]:
        if self.open_item is None:
            return []
        index, self.open_item = self.open_item, None
        item = self.output[index]
        item["status"] = status
        if not emit:
            return []
        ids = {"item_id": item["id"], "output_index": index}
        events: list[Event] = []
        if item["type"] == "message":
            part = item["content"][0]
            events.append(self._event("response.output_text.done", **ids, content_index=0,
                                      text=part["text"], logprobs=[]))  # fmt: skip
            events.append(self._event("response.content_part.done", **ids, content_index=0,
                                      part=dict(part)))  # fmt: skip
        else:
            events.append(self._event("response.function_call_arguments.done", **ids,
                                      name=item["name"], arguments=item["arguments"]))  # fmt: skip
        copy = orjson.loads(orjson.dumps(item))
        events.append(self._event("response.output_item.done", output_index=index, item=copy))
        return events


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }

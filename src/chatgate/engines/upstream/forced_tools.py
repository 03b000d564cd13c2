"""A forced tool call (``tool_choice`` "required" or naming a function) on llama.cpp engines.

llama-server reads ``tool_choice`` only as a string: an object naming a function is
refused ("type must be string") and it falls back to "auto", and "required" is kept only
by chat templates that support tools (SmolLM2's does not: it answers prose). OpenAI
guarantees the call, whatever the model, so on llama.cpp the gateway enforces it, one way
for every template:

- The engine request (``enforce``) gets a ``response_format`` JSON schema of the call,
  ``{"name": <const>, "arguments": <the function's parameters>}`` (an ``anyOf`` over the
  tools for "required": one call), which llama.cpp compiles to a grammar, and
  ``tool_choice`` "none". The tools stay: a template that supports tools still describes
  them to the model (llama.cpp renders ``tools`` whatever the choice), "none" turns off
  llama.cpp's own tool-call parsing, and its chat parsers (common/chat.cpp's autoparser
  and the per-model ones in common/parsers) put a ``response_format`` before tools, so
  the schema holds for templates with tool support or without, and no ``/props`` lookup
  is needed per request. A template without tool support (SmolLM2's) shows the model no
  tools, as before: the grammar, not the model, makes the shape (name and arguments).
  (A few per-model parsers, functionary v3.2, Kimi K2/K3, GigaChat v3, Ling 3, ignore
  ``response_format`` altogether, structured output included: there the answer stays
  text, as below.)
- The engine's answer, JSON text, becomes OpenAI's (``ToolCallAdapter``, which the
  request's ``Upstream`` applies to every line it yields, so /v1/chat streamed and not,
  /v1/messages and /v1/responses all see ``tool_calls``): the content is held back and
  one ``delta.tool_calls`` chunk (index 0, id, name, arguments) comes before the finish
  chunk, whose ``finish_reason`` becomes "tool_calls"; usage is left as it is.
- An answer the length limit cut (finish_reason "length") in the middle of the call, or
  one that is not a call, stays what it was, text with the engine's finish_reason: what
  OpenAI answers then; no call is invented. A cut answer whose text is already a whole
  call is that call: a sampled engine may run on in the grammar's trailing whitespace
  after the closing brace until the limit (seen on /v1/responses with SmolLM2 at
  temperature 1: a complete call, then whitespace to ``max_output_tokens``).

vLLM takes a named ``tool_choice`` natively (guided decoding), and so do OpenAI-compatible
servers: their requests are untouched, as are those of an attached engine whose kind is
unknown (no profile names it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatgate.engines.upstream.client import DONE_LINE, parse_data_line
from chatgate.errors import APIError


def forced_functions(payload: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The functions one of which the request forces a call of, or None when it forces
    none (no ``tool_choice``, "auto", "none"). A forced choice without a matching tool is
    the client's 400, as OpenAI answers it."""
    choice = payload.get("tool_choice")
    functions = [
        tool["function"]
        for tool in payload.get("tools") or []
        if isinstance(tool, dict)
        and tool.get("type", "function") == "function"
        and isinstance(tool.get("function"), dict)
        and isinstance(tool["function"].get("name"), str)
    ]
    if choice == "required":
        if not functions:
            raise _invalid("'tool_choice' \"required\" needs at least one function in 'tools'")
        return functions
    if isinstance(choice, dict) and choice.get("type") == "function":
        spec = choice.get("function")
        name = spec.get("name") if isinstance(spec, dict) else None
        named = [function for function in functions if function["name"] == name]
        if not named:
            raise _invalid(f"'tool_choice' names the function {name!r}, which is not in 'tools'")
        return named[:1]
    return None


def enforce(payload: dict[str, Any], kind: str | None) -> ToolCallAdapter | None:
    """Rewrite a chat payload whose ``tool_choice`` forces a call for a llama.cpp engine
    (see the module's docstring); the adapter that turns its answer into the call. None:
    nothing to enforce (not forced, or an engine that does it natively)."""
    if kind != "llamacpp":
        return None
    functions = forced_functions(payload)
    if functions is None:
        return None
    schemas = [call_schema(function) for function in functions]
    payload["tool_choice"] = "none"  # the schema makes the call; llama.cpp parses none
    payload["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "tool_call", "schema": schemas[0] if len(schemas) == 1
                        else {"anyOf": schemas}},
    }  # fmt: skip
    return ToolCallAdapter(frozenset(function["name"] for function in functions))


def call_schema(function: dict[str, Any]) -> dict[str, Any]:
    """The JSON of one call of ``function``: its name, and arguments per its parameters."""
    parameters = function.get("parameters")
    return {
        "type": "object",
        "properties": {
            "name": {"const": function["name"]},
            "arguments": parameters if isinstance(parameters, dict) and parameters
            else {"type": "object"},
        },
        "required": ["name", "arguments"],
    }  # fmt: skip


def parse_call(text: str, names: frozenset[str]) -> tuple[str, str] | None:
    """(name, arguments as a JSON string) when ``text`` is a call of one of ``names``."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    name, arguments = value.get("name"), value.get("arguments")
    if name not in names or not isinstance(arguments, dict):
        return None
    return str(name), orjson.dumps(arguments).decode()


@dataclass
class ToolCallAdapter:
    """Turns an engine's chunk stream answering a forced call into OpenAI's tool-call
    stream: content is held back per choice; at a choice's finish it comes out as one
    ``delta.tool_calls`` chunk (and finish_reason "tool_calls"), or as the text it was
    when it is not a call or was cut. A choice the engine itself answered with
    ``tool_calls`` is passed through as it is."""

    names: frozenset[str]
    held: dict[int, list[str]] = field(default_factory=dict)
    native: set[int] = field(default_factory=set)  # choices with the engine's own calls
    template: dict[str, Any] = field(default_factory=dict)  # the last chunk's id, model …

    def adapt(self, batch: list[bytes]) -> list[bytes]:
        out: list[bytes] = []
        for line in batch:
            out.extend(self._line(line))
        return out

    def end(self) -> list[bytes]:
        """What is still held when the stream ends without a finish: the text, as it was."""
        lines = [_data(self._like(i, {"content": t})) for i, t in self._drain() if t]
        return lines

    def _line(self, line: bytes) -> list[bytes]:
        if line == DONE_LINE:
            return [*self.end(), line]
        chunk = parse_data_line(line)
        choices = chunk.get("choices") if chunk is not None else None
        if chunk is None or not isinstance(choices, list) or not choices:
            return [line]  # comments, usage reports, errors
        self.template = {k: v for k, v in chunk.items() if k not in ("choices", "usage", "timings")}
        before: list[bytes] = []
        for choice in choices:
            if isinstance(choice, dict):
                before.extend(self._choice(choice))
        keep = chunk.get("usage") is not None or any(
            isinstance(c, dict) and (c.get("finish_reason") or c.get("delta")) for c in choices
        )
        return [*before, _data(chunk)] if keep else before

    def _choice(self, choice: dict[str, Any]) -> list[bytes]:
        """Hold this choice's content; at its finish, the chunk that comes before."""
        raw_index = choice.get("index")
        index = raw_index if isinstance(raw_index, int) else 0
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if delta.get("tool_calls"):
                self.native.add(index)
            elif "content" in delta:
                text = delta.pop("content")
                if isinstance(text, str) and text:
                    self.held.setdefault(index, []).append(text)
                choice.pop("logprobs", None)  # of text that is not relayed as such
        reason = choice.get("finish_reason")
        if not reason or index in self.native:
            return []
        text = "".join(self.held.pop(index, []))
        call = parse_call(text, self.names)  # a whole call, even if the limit came after
        if call is None:
            return [_data(self._like(index, {"content": text}))] if text else []
        choice["finish_reason"] = "tool_calls"
        name, arguments = call
        tool_call = {"index": 0, "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
                     "function": {"name": name, "arguments": arguments}}  # fmt: skip
        return [_data(self._like(index, {"tool_calls": [tool_call]}))]

    def _drain(self) -> list[tuple[int, str]]:
        held = [(index, "".join(parts)) for index, parts in sorted(self.held.items())]
        self.held.clear()
        return held

    def _like(self, index: int, delta: dict[str, Any]) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        return {**self.template, "choices": [choice]}


def _data(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk)


def _invalid(message: str) -> APIError:
    return APIError(400, message, "invalid_value", param="tool_choice")

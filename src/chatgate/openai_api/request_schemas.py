"""JSON Schemas of the ``/v1`` request bodies, for ``/openapi.json``.

The relayed routes are raw ASGI (FastAPI documents nothing of them), and their bodies are
judged by ``validation.py``; these schemas say the same rules, built from the same
constants, so that a body the schema calls valid is accepted and one it calls invalid is
refused (the contract test sends both). The limits that are settings are documented at
their defaults. Other fields pass through to the engine (``additionalProperties``).
"""

from __future__ import annotations

from typing import Any

from chatgate.openai_api.validation import (
    MAX_LEGACY_LOGPROBS,
    MAX_SCHEMA_NAME,
    MAX_STOP_SEQUENCES,
    MAX_TOP_LOGPROBS,
    SEED_RANGE,
)
from chatgate.sampling import SAMPLING_RANGES, Range
from chatgate.settings import Settings

_DEFAULTS = Settings.model_fields
MAX_N: int = _DEFAULTS["max_n"].default
MAX_TOKENS: int = _DEFAULTS["max_tokens_cap"].default
MAX_MESSAGES: int = _DEFAULTS["max_messages"].default

STRING = {"type": "string"}
OBJECT = {"type": "object"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _integer(low: int, high: int) -> dict[str, Any]:
    return _nullable({"type": "integer", "minimum": low, "maximum": high})


def _number(bounds: Range) -> dict[str, Any]:
    low = "exclusiveMinimum" if bounds.low_open else "minimum"
    return _nullable({"type": "number", low: bounds.low, "maximum": bounds.high})


def _part(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", kind],
        "properties": {"type": {"const": kind}, kind: payload},
    }


CONTENT_PART = {
    "anyOf": [
        _part("text", STRING),
        _part("refusal", STRING),
        _part(
            "image_url",
            {
                "anyOf": [
                    STRING,
                    {"type": "object", "required": ["url"], "properties": {"url": STRING}},
                ]
            },
        ),
        _part("input_audio", OBJECT),
        _part("file", OBJECT),
    ]
}
CONTENT = {"anyOf": [STRING, {"type": "array", "items": CONTENT_PART}]}
_COMMON = {"name": _nullable(STRING), "tool_calls": _nullable({"type": "array"})}


def _message(roles: list[str], required: list[str], **properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["role", *required],
        "properties": {"role": {"enum": roles}, **_COMMON, **properties},
    }


# A message's content may be missing only for an assistant turn that called tools (or a
# function), and for a tool's result, which names its call.
MESSAGE = {
    "anyOf": [
        _message(["system", "developer", "user", "assistant", "function"], ["content"],
                 content=CONTENT),
        _message(["assistant"], ["tool_calls"],
                 tool_calls={"type": "array", "minItems": 1}, content=_nullable(CONTENT)),
        _message(["assistant"], ["function_call"],
                 function_call={"type": "object", "minProperties": 1},
                 content=_nullable(CONTENT)),
        _message(["tool"], ["tool_call_id"], tool_call_id=STRING, content=_nullable(CONTENT)),
    ]
}  # fmt: skip

SAMPLING: dict[str, Any] = {
    **{name: _number(bounds) for name, bounds in SAMPLING_RANGES.items()},
    "n": _integer(1, MAX_N),
    "max_tokens": _integer(1, MAX_TOKENS),
    "max_completion_tokens": _integer(1, MAX_TOKENS),
    "seed": _integer(*SEED_RANGE),
    "stream": _nullable({"type": "boolean"}),
    "stream_options": _nullable(OBJECT),
    "user": _nullable(STRING),
    "logit_bias": _nullable(OBJECT),
    "stop": _nullable(
        {"anyOf": [STRING, {"type": "array", "items": STRING, "maxItems": MAX_STOP_SEQUENCES}]}
    ),
}
MODEL = {"type": "string", "minLength": 1, "description": "A model id or alias (GET /v1/models)"}

# Structured output; json_object's ``schema`` is llama.cpp's extension.
RESPONSE_FORMAT = {
    "anyOf": [
        {"type": "object", "required": ["type"], "properties": {"type": {"const": "text"}}},
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"const": "json_object"}, "schema": _nullable(OBJECT)},
        },
        {
            "type": "object",
            "required": ["type", "json_schema"],
            "properties": {
                "type": {"const": "json_schema"},
                "json_schema": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": MAX_SCHEMA_NAME},
                        "description": _nullable(STRING),
                        "schema": _nullable(OBJECT),
                        "strict": _nullable({"type": "boolean"}),
                    },
                },
            },
        },
    ]
}

CHAT_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "additionalProperties": True,
    "properties": {
        "model": MODEL,
        "messages": {"type": "array", "items": MESSAGE, "minItems": 1, "maxItems": MAX_MESSAGES},
        **SAMPLING,
        "logprobs": _nullable({"type": "boolean"}),
        "top_logprobs": _integer(0, MAX_TOP_LOGPROBS),
        "tools": _nullable({"type": "array"}),
        "response_format": _nullable(RESPONSE_FORMAT),
        "tool_choice": _nullable({"anyOf": [STRING, OBJECT]}),
    },
}

_TOKENS = {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1}
COMPLETION_REQUEST = {
    "type": "object",
    "required": ["model", "prompt"],
    "additionalProperties": True,
    "properties": {
        "model": MODEL,
        "prompt": {
            "anyOf": [
                STRING,
                {"type": "array", "items": STRING, "minItems": 1},
                _TOKENS,
                {"type": "array", "items": _TOKENS, "minItems": 1},
            ]
        },
        **SAMPLING,
        "logprobs": _integer(0, MAX_LEGACY_LOGPROBS),
        "best_of": _integer(1, MAX_N),
        "echo": _nullable({"type": "boolean"}),
        "suffix": _nullable(STRING),
    },
}

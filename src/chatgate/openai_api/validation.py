"""Every check of a ``/v1`` request body, before any limit is charged or engine called.

Engines answer malformed bodies badly: llama.cpp's server fails with a 500 on a content
that is an object, and sampling values outside OpenAI's ranges (``n=1000``,
``temperature=-5``) reach them unchecked. So the gateway judges the shape OpenAI
documents and refuses anything else with a 400 naming the field (``param``, a dotted path
such as ``messages.0.content``). Fields it does not know pass through untouched: OpenAI
clients send many, and engines read their own extensions.
"""

from __future__ import annotations

from typing import Any

from chatgate.errors import APIError
from chatgate.limits.caps import check_prompt_caps
from chatgate.sampling import SAMPLING_RANGES, is_integer, is_number
from chatgate.settings import Settings

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_STOP_SEQUENCES = 4
MAX_TOP_LOGPROBS = 20  # chat completions
MAX_LEGACY_LOGPROBS = 5  # legacy completions: `logprobs` is a count there
SEED_RANGE = (-(2**63), 2**63 - 1)  # what engines parse as a 64-bit integer
# Content parts carry their payload under the name of their type ({"type": "text",
# "text": "..."}); these payloads must be strings, image_url a URL or {"url": ...}.
_STRING_PARTS = frozenset({"text", "refusal"})
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
MAX_SCHEMA_NAME = 64  # OpenAI's limit for json_schema.name


def invalid(message: str, param: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, code, param=param)


def validate_request(body: Any, route: str, settings: Settings) -> dict[str, Any]:
    """``body`` when it is a request the engines can take, else the 400 to send.

    ``route`` is "v1.chat" (``messages``) or "v1.completions" (``prompt``)."""
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object", "invalid_body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise APIError(400, "'model' is required", "missing_model", param="model")
    if route == "v1.chat":
        check_messages(body.get("messages"))
        check_prompt_caps(body["messages"], settings)
        check_chat_options(body)
    else:
        check_prompt(body.get("prompt"))
        check_prompt_caps([{"content": body["prompt"]}], settings)
        check_legacy_options(body, settings)
    check_sampling(body, settings)
    return body


# --------------------------------------------------------------------------- messages


def check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty list", "messages", "invalid_messages")
    for index, message in enumerate(messages):
        check_message(message, f"messages.{index}")


def check_message(message: Any, path: str) -> None:
    if not isinstance(message, dict):
        raise invalid(f"'{path}' must be an object", path, "invalid_messages")
    role = message.get("role")
    if not isinstance(role, str) or role not in ROLES:
        raise invalid(
            f"'{path}.role' must be one of {', '.join(sorted(ROLES))}",
            f"{path}.role",
            "invalid_messages",
        )
    content = message.get("content")
    if content is None:
        if not _may_omit_content(message):
            raise invalid(f"'{path}.content' is required", f"{path}.content", "invalid_messages")
    elif isinstance(content, list):
        for index, part in enumerate(content):
            check_part(part, f"{path}.content.{index}")
    elif not isinstance(content, str):
        raise invalid(
            f"'{path}.content' must be a string or a list of content parts",
            f"{path}.content",
            "invalid_messages",
        )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise invalid(
            f"'{path}.tool_call_id' is required for a tool message",
            f"{path}.tool_call_id",
            "invalid_messages",
        )
    _optional(message, "name", path, str, "a string")
    _optional(message, "tool_calls", path, list, "a list")


def _may_omit_content(message: dict[str, Any]) -> bool:
    """Only an assistant turn that called tools (or a function), or a tool's result,
    may have no content."""
    if message["role"] == "assistant":
        return bool(message.get("tool_calls") or message.get("function_call"))
    return bool(message["role"] == "tool")


def check_part(part: Any, path: str) -> None:
    """One content part: ``{"type": T, T: payload}`` as OpenAI defines them (text,
    image_url, input_audio, file, refusal); engines' own types (vLLM's video_url…) pass
    when they follow the same form."""
    if not isinstance(part, dict) or not isinstance(part.get("type"), str) or not part["type"]:
        raise invalid(
            f"'{path}' must be an object with a 'type'", f"{path}.type", "invalid_messages"
        )
    kind = part["type"]
    payload = part.get(kind)
    if kind in _STRING_PARTS:
        ok = isinstance(payload, str)
        expected = "a string"
    elif kind == "image_url":
        ok = isinstance(payload, str) or (
            isinstance(payload, dict) and isinstance(payload.get("url"), str)
        )
        expected = "a URL or an object with a 'url'"
    else:
        ok = isinstance(payload, dict)
        expected = "an object"
    if not ok:
        raise invalid(
            f"'{path}.{kind}' must be {expected} for a '{kind}' part",
            f"{path}.{kind}",
            "invalid_messages",
        )


# ----------------------------------------------------------------------------- prompt


def check_prompt(prompt: Any) -> None:
    """A legacy prompt: a string, a list of strings, a list of token ids, or a list of
    token-id lists."""
    if isinstance(prompt, str):
        return
    message = "'prompt' must be a string, a list of strings, or token ids"
    if not isinstance(prompt, list) or not prompt:
        raise invalid(message, "prompt", "invalid_prompt")
    if all(isinstance(item, str) for item in prompt) or _token_ids(prompt):
        return
    if all(isinstance(item, list) and item and _token_ids(item) for item in prompt):
        return
    raise invalid(message, "prompt", "invalid_prompt")


def _token_ids(items: list[Any]) -> bool:
    # Token ids are ints proper: engines read ``3.0`` in a prompt as text, not a token.
    return all(isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in items)


# ---------------------------------------------------------------------------- options


def check_sampling(body: dict[str, Any], settings: Settings) -> None:
    """The parameters both routes share: sampling ranges (as ``/api/chat``), ``n``,
    answer lengths, ``stream``, ``stop`` and ``seed``."""
    for name, bounds in SAMPLING_RANGES.items():
        value = body.get(name)
        if value is not None and not (is_number(value) and bounds.contains(value)):
            raise invalid(f"'{name}' must be a number {bounds}", name)
    _integer(body, "n", 1, settings.max_n)
    for name in ("max_tokens", "max_completion_tokens"):
        _answer_length(body, name, settings)
    _integer(body, "seed", *SEED_RANGE)
    _optional(body, "stream", None, bool, "true or false")
    _optional(body, "stream_options", None, dict, "an object")
    _optional(body, "user", None, str, "a string")
    _optional(body, "logit_bias", None, dict, "an object")
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise invalid("'stop' must be a string or a list of strings", "stop")
        if len(stop) > MAX_STOP_SEQUENCES:
            raise invalid(f"'stop' may hold at most {MAX_STOP_SEQUENCES} sequences", "stop")


def check_chat_options(body: dict[str, Any]) -> None:
    _optional(body, "logprobs", None, bool, "true or false")
    _integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS)
    _optional(body, "tools", None, list, "a list")
    check_response_format(body.get("response_format"))
    choice = body.get("tool_choice")
    if choice is not None and not isinstance(choice, str | dict):
        raise invalid("'tool_choice' must be a string or an object", "tool_choice")


def check_response_format(value: Any) -> None:
    """``response_format`` as OpenAI defines it: ``text``, ``json_object`` (with an
    optional ``schema``, llama.cpp's extension) or ``json_schema`` with a named
    ``json_schema`` object. Both engine kinds read the OpenAI form as it is (llama-server
    turns the schema into a grammar, vLLM into guided decoding), so a valid one passes
    through unchanged; any other shape is refused here, naming the field, instead of
    failing in the engine."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise invalid("'response_format' must be an object", "response_format")
    kind = value.get("type")
    if kind not in RESPONSE_FORMATS:
        raise invalid(
            f"'response_format.type' must be one of {', '.join(RESPONSE_FORMATS)}",
            "response_format.type",
        )
    if kind == "json_object":
        _optional(value, "schema", "response_format", dict, "an object")
    elif kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict):
            raise invalid(
                "'response_format.json_schema' is required for the 'json_schema' type",
                "response_format.json_schema",
            )
        name = spec.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= MAX_SCHEMA_NAME:
            raise invalid(
                f"'response_format.json_schema.name' must be a string of 1 to "
                f"{MAX_SCHEMA_NAME} characters",
                "response_format.json_schema.name",
            )
        _optional(spec, "schema", "response_format.json_schema", dict, "an object")
        _optional(spec, "strict", "response_format.json_schema", bool, "true or false")
        _optional(spec, "description", "response_format.json_schema", str, "a string")


def check_legacy_options(body: dict[str, Any], settings: Settings) -> None:
    _integer(body, "logprobs", 0, MAX_LEGACY_LOGPROBS)
    _integer(body, "best_of", 1, settings.max_n)
    _optional(body, "echo", None, bool, "true or false")
    _optional(body, "suffix", None, str, "a string")


def _answer_length(body: dict[str, Any], name: str, settings: Settings) -> None:
    value = body.get(name)
    if value is None:
        return
    if not is_integer(value) or value < 1:
        raise invalid(f"'{name}' must be a positive integer", name)
    if value > settings.max_tokens_cap:
        raise invalid(
            f"'{name}' may be at most {settings.max_tokens_cap}", name, "max_tokens_too_large"
        )
    body[name] = int(value)


def _integer(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if not (is_integer(value) and low <= value <= high):
        raise invalid(f"'{name}' must be an integer from {low} to {high}", name)
    body[name] = int(value)  # 3.0 is an integer in JSON; engines may want 3


def _optional(
    obj: dict[str, Any],
    name: str,
    path: str | None,
    kind: type | tuple[type, ...],
    expected: str,
) -> None:
    """A field that may be absent or null, but is of ``kind`` when given."""
    value = obj.get(name)
    if value is None or isinstance(value, kind):
        return
    param = f"{path}.{name}" if path else name
    raise invalid(f"'{param}' must be {expected}", param)

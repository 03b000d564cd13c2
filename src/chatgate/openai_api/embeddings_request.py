"""The checks of a ``POST /v1/embeddings`` body and the answer the client gets.

OpenAI's ``input`` comes in four shapes: a string, a list of strings, a list of token
ids (one input) and a list of such lists. Anything else, an empty input included, is a
400 naming the field before any limit is charged or engine called (engines answer
those badly: llama.cpp turns an empty list into a 500).

The engine is always asked for floats and the gateway writes ``base64`` itself (the
little-endian float32 bytes OpenAI sends): one behaviour for every engine kind, and the
vectors are checked (one per input, all of the model's size) before the client sees them.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from typing import Any, Literal

from chatgate.engines.catalog.profiles import EmbeddingsSpec
from chatgate.engines.upstream.client import EngineError
from chatgate.errors import APIError
from chatgate.sampling import is_integer

EncodingFormat = Literal["float", "base64"]
MAX_INPUTS = 2048  # OpenAI's limit of inputs per request
SPECIAL_TOKENS = 2  # BOS and EOS, the most an engine adds to one input
# The gateway decides these; everything else in the body passes through to the engine
# (llama.cpp's ``embd_normalize``, vLLM's ``truncate_prompt_tokens``...).
GATEWAY_OWNED = ("model", "input", "encoding_format", "dimensions")


def invalid(message: str, param: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, code, param=param)


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A checked body: its inputs counted, the rest kept for the engine."""

    model: str
    input: str | list[Any]
    count: int  # how many vectors the answer has
    chars: int  # characters of text inputs (the prompt cap, the usage estimate)
    token_ids: int  # token ids given directly (counted exactly)
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def inputs(self) -> list[tuple[str, str | list[int]]]:
        """Each input with the ``param`` that names it in a 400."""
        given = self.input
        if isinstance(given, str) or self.count == 1 and given and isinstance(given[0], int):
            return [("input", given)]
        return [(f"input.{index}", item) for index, item in enumerate(given)]

    @property
    def prompt_estimate(self) -> int:
        """Tokens, for an engine that reports none: ids exactly, text about 4 chars each."""
        return self.token_ids + (self.chars + 3) // 4


def parse_request(body: Any, max_chars: int) -> EmbeddingsRequest:
    """The body as a request, or the 400 to send (``param`` names the field)."""
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object", "invalid_body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "'model' is required", "missing_model", param="model")
    if "user" in body and not isinstance(body["user"], str):
        raise invalid("'user' must be a string", "user")
    count, chars, token_ids = _check_input(body.get("input"))
    if chars > max_chars:
        raise invalid(f"'input' is over {max_chars} characters", "input", "prompt_too_long")
    return EmbeddingsRequest(
        model=model,
        input=body["input"],
        count=count,
        chars=chars,
        token_ids=token_ids,
        encoding_format=_encoding_format(body.get("encoding_format")),
        dimensions=_dimensions(body.get("dimensions")),
        extra={k: v for k, v in body.items() if k not in GATEWAY_OWNED},
    )


def _check_input(value: Any) -> tuple[int, int, int]:
    """(inputs, characters, token ids) of a valid ``input``; else the 400."""
    if isinstance(value, str):
        _text(value, "input")
        return 1, len(value), 0
    if not isinstance(value, list) or not value:
        raise invalid(
            "'input' must be a non-empty string, list of strings, list of token ids or"
            " list of token-id lists",
            "input",
        )
    if len(value) > MAX_INPUTS:
        raise invalid(f"'input' may have at most {MAX_INPUTS} items", "input")
    first = value[0]
    if isinstance(first, int | float) and not isinstance(first, bool):
        _token_ids(value, "input")  # one input given as token ids
        return 1, 0, len(value)
    if isinstance(first, str):
        for index, item in enumerate(value):
            _text(item, f"input.{index}")
        return len(value), sum(len(item) for item in value), 0
    for index, item in enumerate(value):
        if not isinstance(item, list) or not item:
            raise invalid(
                "'input' items must all be non-empty strings or all non-empty token-id lists",
                f"input.{index}",
            )
        _token_ids(item, f"input.{index}")
    return len(value), 0, sum(len(item) for item in value)


def _text(value: Any, param: str) -> None:
    if not isinstance(value, str):
        raise invalid(f"'{param}' must be a string like the other items", param)
    if not value:
        raise invalid(f"'{param}' must not be empty", param)


def _token_ids(ids: list[Any], param: str) -> None:
    for index, token in enumerate(ids):
        if not _is_token_id(token):
            raise invalid(f"'{param}.{index}' must be a token id (an integer >= 0)", param)


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _encoding_format(value: Any) -> EncodingFormat:
    if value is None or value == "float":
        return "float"
    if value == "base64":
        return "base64"
    raise invalid("'encoding_format' must be 'float' or 'base64'", "encoding_format")


def _dimensions(value: Any) -> int | None:
    if value is None:
        return None
    if not is_integer(value) or value < 1:
        raise invalid("'dimensions' must be a positive integer", "dimensions")
    return int(value)


def bytes_bound(text: str) -> int:
    """The most tokens ``text`` can be: byte-level tokenizers make no token shorter than a
    byte, plus the special tokens an engine adds around an input (BOS, EOS)."""
    return len(text.encode()) + SPECIAL_TOKENS


def too_long(param: str, tokens: int, limit: int) -> APIError:
    return invalid(
        f"'{param}' has {tokens} tokens; this model embeds at most {limit} per input",
        param,
        "input_too_long",
    )


def engine_payload(request: EmbeddingsRequest, spec: EmbeddingsSpec) -> dict[str, Any]:
    """What the engine gets: the input, floats, and ``dimensions`` only where the model
    can shorten its vectors; asking a model for another size than its own is a 400."""
    payload = {**request.extra, "input": request.input, "encoding_format": "float"}
    wanted = request.dimensions
    if wanted is not None and wanted != spec.dimensions:
        if not spec.matryoshka:
            raise invalid(
                f"This model's embeddings have {spec.dimensions} dimensions and cannot be"
                " shortened ('dimensions' is not supported)",
                "dimensions",
                "unsupported_parameter",
            )
        if wanted > spec.dimensions:
            raise invalid(
                f"'dimensions' may be at most {spec.dimensions} for this model", "dimensions"
            )
        payload["dimensions"] = wanted
    return payload


def vectors(data: dict[str, Any], count: int) -> list[list[float]]:
    """The engine's vectors in input order, or ``engine_bad_response`` when they are not
    one list of numbers per input, all of one size."""
    items = data.get("data")
    if not isinstance(items, list) or len(items) != count:
        raise EngineError(
            f"The engine returned {len(items) if isinstance(items, list) else 'no'} embeddings"
            f" for {count} inputs",
            "engine_bad_response",
        )
    found: dict[int, list[float]] = {}
    for position, item in enumerate(items):
        vector = item.get("embedding") if isinstance(item, dict) else None
        index = item.get("index", position) if isinstance(item, dict) else position
        if not isinstance(vector, list) or not _is_vector(vector):
            raise EngineError("The engine returned an embedding that is not a list of numbers",
                              "engine_bad_response")  # fmt: skip
        found[index] = vector
    ordered = [found.get(i) for i in range(count)]
    if any(v is None for v in ordered) or len({len(v or ()) for v in ordered}) != 1:
        raise EngineError("The engine returned embeddings of mixed sizes or indexes",
                          "engine_bad_response")  # fmt: skip
    return [v for v in ordered if v is not None]


def _is_vector(value: list[Any]) -> bool:
    return bool(value) and all(
        isinstance(x, int | float) and not isinstance(x, bool) for x in value
    )


def engine_prompt_tokens(data: dict[str, Any]) -> int | None:
    usage = data.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None


def encode(vector: list[float], encoding: EncodingFormat) -> list[float] | str:
    """A vector as the client asked: floats, or base64 of little-endian float32."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def response(
    model: str, found: list[list[float]], encoding: EncodingFormat, prompt_tokens: int
) -> dict[str, Any]:
    """OpenAI's answer shape, exactly."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": encode(vector, encoding)}
            for index, vector in enumerate(found)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# ----------------------------------------------------------------------- OpenAPI

_TOKEN_IDS = {"type": "array", "minItems": 1, "items": {"type": "integer", "minimum": 0}}
_INPUTS = {"minItems": 1, "maxItems": MAX_INPUTS}
# The same rules as ``parse_request``, for /openapi.json (the route is raw ASGI). Which
# models serve embeddings and how long their vectors are is per model, not in the schema.
EMBEDDINGS_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["model", "input"],
    "properties": {
        "model": {"type": "string", "minLength": 1},
        "input": {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", **_INPUTS, "items": {"type": "string", "minLength": 1}},
                {**_TOKEN_IDS, "maxItems": MAX_INPUTS},
                {"type": "array", **_INPUTS, "items": _TOKEN_IDS},
            ]
        },
        "encoding_format": {"anyOf": [{"enum": ["float", "base64"]}, {"type": "null"}]},
        "dimensions": {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "null"}]},
        "user": {"type": "string"},
    },
    "additionalProperties": True,
}
_VECTOR = {
    "anyOf": [
        {"type": "array", "items": {"type": "number"}},
        {"type": "string", "description": "base64 of little-endian float32"},
    ]
}
EMBEDDINGS_RESPONSE: dict[str, Any] = {
    "type": "object",
    "required": ["object", "data", "model", "usage"],
    "properties": {
        "object": {"const": "list"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["object", "index", "embedding"],
                "properties": {
                    "object": {"const": "embedding"},
                    "index": {"type": "integer"},
                    "embedding": _VECTOR,
                },
            },
        },
        "model": {"type": "string"},
        "usage": {
            "type": "object",
            "required": ["prompt_tokens", "total_tokens"],
            "properties": {
                "prompt_tokens": {"type": "integer"},
                "total_tokens": {"type": "integer"},
            },
        },
    },
}

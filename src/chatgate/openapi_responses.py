"""The error responses each operation declares in ``/openapi.json``.

Every error the gateway sends has one shape (``chatgate.errors``); clients generated from
the schema, and the contract test (``tests/contract``), rely on each operation listing
every status it can answer. Routers take these through FastAPI's ``responses=``:
the router-wide set (who may call: ``PUBLIC``, ``SIGNED_IN``, ``ADMIN``) plus, per
operation, what its input and its work can fail with (``errors(400, 404)``).

Validation errors are answered 400 here, not FastAPI's 422 (``errors.py``).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    type: str = Field(examples=["invalid_request_error"])
    message: str = Field(examples=["'messages.0.role' must be one of assistant, ..."])
    code: str = Field(examples=["invalid_messages"])
    param: str | None = Field(default=None, examples=["messages.0.role"])


class ErrorResponse(BaseModel):
    """``{"error": {...}}``: every error the gateway sends."""

    error: ErrorDetail


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer"},
    }
}

DESCRIPTIONS: dict[int, str] = {
    400: "The request is invalid: a parameter or the body (`param` names it)",
    401: "Missing or invalid credentials",
    403: "The caller may not do this (role, or the API key's scopes)",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "The request body is too large",
    422: "The engine refused the request (the message is its reason)",
    429: "A rate limit or token budget is exhausted (see Retry-After)",
    502: "The engine failed",
    503: "Unavailable for now: shutting down, the database or the engines (see Retry-After)",
    504: "The engine did not answer in time",
}
_WITH_RETRY_AFTER = frozenset({429, 503})


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The declarations of these error statuses, in the one error shape."""
    declared: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": DESCRIPTIONS[code]}
        if code in _WITH_RETRY_AFTER:
            entry["headers"] = _RETRY_AFTER
        declared[code] = entry
    return declared


# Router-wide sets. Any request may meet a draining server or a database outage (503);
# a body over the cap is refused before routing (413) wherever a body is sent.
PUBLIC = errors(503)
SIGNED_IN = errors(401, 403, 503)  # 403: an API key whose scopes exclude the route
ADMIN = SIGNED_IN
ENGINE = errors(429, 502, 503, 504)  # routes that call an engine


def openapi_errors(*codes: int) -> dict[str, dict[str, Any]]:
    """The same declarations as raw OpenAPI, for operations written out by hand (the raw
    ASGI ``/v1`` relay routes); the schema is the component FastAPI registers for
    ``ErrorResponse``."""
    schema = {"$ref": "#/components/schemas/ErrorResponse"}
    declared: dict[str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "description": DESCRIPTIONS[code],
            "content": {"application/json": {"schema": schema}},
        }
        if code in _WITH_RETRY_AFTER:
            entry["headers"] = _RETRY_AFTER
        declared[str(code)] = entry
    return declared


def without_fastapi_422(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without the 422 FastAPI declares for every operation with inputs: this
    API answers invalid input with a 400 (``errors.py``), declared by the routers. Other
    422 entries (an engine's refusal on ``/v1``) stay."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            declared = json.dumps(responses.get("422", {}))
            if "HTTPValidationError" in declared:
                del responses["422"]
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    return schema

"""The base of every JSON request body: JSON's own types, as the OpenAPI schema says.

pydantic's default (lax) mode took ``"disabled": 0`` as ``false`` and ``"max_tokens":
"10"`` as ``10``, so the API accepted bodies its own schema calls invalid. Strict mode
refuses them (a 400 naming the field). Timestamps stay lax (``Strict(False)``): JSON has
no date type, they arrive as ISO 8601 strings.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict

from chatgate.params import MAX_ROW_ID


class RequestBody(BaseModel):
    model_config = ConfigDict(strict=True)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _iso_only(value: Any) -> Any:
    """pydantic also reads numbers (and numeric strings) as Unix times; the schema says an
    ISO 8601 string, and ``0.5`` is no date a client means."""
    if value is None or isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _NUMBER.fullmatch(value.strip()):
        raise ValueError("must be an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


# A date-time in a body or a query: an ISO 8601 string (a zone-less one is UTC where the
# field says so). Not strict: JSON and query strings carry dates as text.
IsoDateTime = Annotated[datetime, Strict(False), BeforeValidator(_iso_only)]


def _json_integer(value: Any) -> Any:
    """JSON Schema's integers: ``3`` and ``3.0``; not ``"3"``, not ``true``."""
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise ValueError("must be an integer")
    return int(value)


# Integer fields of request bodies (strict ``int`` would refuse ``3.0``, which JSON
# Schema, and so the API's own schema, calls an integer). Bounds go before the validator:
# after it, pydantic would not put them in the JSON schema.
JsonInt = Annotated[int, Strict(False), BeforeValidator(_json_integer)]
PositiveJsonInt = Annotated[int, Field(ge=1), Strict(False), BeforeValidator(_json_integer)]
CountJsonInt = Annotated[int, Field(ge=0), Strict(False), BeforeValidator(_json_integer)]
RowIdJsonInt = Annotated[
    int, Field(ge=1, le=MAX_ROW_ID), Strict(False), BeforeValidator(_json_integer)
]

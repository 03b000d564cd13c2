from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chatgate.auth.scopes import Scope
from chatgate.limits.policy import LimitPolicy
from chatgate.request_body import IsoDateTime, JsonInt, RequestBody


def _as_utc(value: datetime | None) -> datetime | None:
    """A timestamp without a zone means UTC (PostgreSQL would read it in the server's zone)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _valid_limits(value: dict[str, int | None]) -> dict[str, int | None]:
    LimitPolicy.model_validate(value)  # unknown names or negative values are refused
    return value


UTCTimestamp = Annotated[IsoDateTime | None, AfterValidator(_as_utc)]


class KeyCreate(RequestBody):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Scope] = Field(default_factory=list, max_length=8)
    expires_at: UTCTimestamp = None
    limits: Annotated[dict[str, JsonInt | None], AfterValidator(_valid_limits)] = Field(
        default_factory=dict
    )


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: list[str]
    limits: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The full key. It is shown only this once.")


class KeyList(BaseModel):
    keys: list[KeyOut]

"""Response shapes of ``/api/usage`` and ``/api/usage/summary``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from chatgate.usage.queries import UsageEntry, UsageGroup


class UsageRowOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    request_id: str
    created_at: datetime
    user_id: int | None
    username: str | None
    api_key_id: int | None
    api_key_name: str | None
    route: str
    model: str | None
    engine: str | None
    status: str = Field(description="ok | error | cancelled | interrupted | rejected")
    status_code: int
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    ttft_ms: float | None
    latency_ms: float
    queue_ms: float | None = Field(
        default=None, description="Time waiting in the gateway's queue for an engine slot"
    )
    error: str | None

    @classmethod
    def of(cls, entry: UsageEntry) -> UsageRowOut:
        return cls.model_validate(entry)


class UsagePage(BaseModel):
    rows: list[UsageRowOut]
    next_cursor: str | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page"
    )


class UsageGroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str | int | None = Field(
        description="The UTC date (day), model name (model), user id (user) or key id (key)"
    )
    label: str | None = Field(description="Username (user), key name (key), else the key")
    requests: int
    ok: int
    error: int
    other: int = Field(description="cancelled, interrupted and rejected requests")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    avg_latency_ms: float | None
    max_latency_ms: float | None
    avg_ttft_ms: float | None

    @classmethod
    def of(cls, group: UsageGroup) -> UsageGroupOut:
        return cls.model_validate(group)


class UsageSummary(BaseModel):
    group_by: str
    since: datetime | None
    until: datetime | None
    groups: list[UsageGroupOut]
    totals: UsageGroupOut

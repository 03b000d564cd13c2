"""Limit policies: role defaults, then per-user and per-key overrides."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent_streams",
    "tokens_per_day",
    "tokens_per_month",
)
# Not limits but a share: how a busy engine's slots are handed out (engines/admission/queue.py).
SCHEDULING_FIELDS = ("queue_weight", "queue_priority")
POLICY_FIELDS = LIMIT_FIELDS + SCHEDULING_FIELDS
QueuePriority = Literal["interactive", "api", "batch"]


class LimitPolicy(BaseModel):
    """None means unlimited; 0 blocks."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)
    concurrent_streams: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    tokens_per_month: int | None = Field(default=None, ge=0)
    # A user's (or key's) share of a busy engine against other users (None: 1), and the
    # class its /v1 requests wait in (None: "api"; "batch" waits behind everything else).
    queue_weight: float | None = Field(default=None, gt=0, le=100)
    queue_priority: QueuePriority | None = None

    def overlay(self, overrides: dict[str, Any] | None) -> LimitPolicy:
        """This policy with the fields that ``overrides`` sets replaced (null: unlimited)."""
        if not overrides:
            return self
        known = {k: v for k, v in overrides.items() if k in POLICY_FIELDS}
        return LimitPolicy.model_validate({**self.model_dump(), **known})

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, name) is None for name in LIMIT_FIELDS)


DEFAULT_ROLE_LIMITS: dict[str, dict[str, int | None]] = {
    "user": {"requests_per_minute": 120, "concurrent_streams": 8},
    "admin": {},
}

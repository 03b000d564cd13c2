"""Limit policies: role defaults, then per-user and per-key overrides."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LIMIT_FIELDS = (
    "requests_per_minute",
    "tokens_per_minute",
    "concurrent_streams",
    "tokens_per_day",
    "tokens_per_month",
)


class LimitPolicy(BaseModel):
    """None means unlimited; 0 blocks."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=0)
    tokens_per_minute: int | None = Field(default=None, ge=0)
    concurrent_streams: int | None = Field(default=None, ge=0)
    tokens_per_day: int | None = Field(default=None, ge=0)
    tokens_per_month: int | None = Field(default=None, ge=0)

    def overlay(self, overrides: dict[str, Any] | None) -> LimitPolicy:
        """This policy with the fields that ``overrides`` sets replaced (null: unlimited)."""
        if not overrides:
            return self
        known = {k: v for k, v in overrides.items() if k in LIMIT_FIELDS}
        return LimitPolicy.model_validate({**self.model_dump(), **known})

    @property
    def unlimited(self) -> bool:
        return all(getattr(self, name) is None for name in LIMIT_FIELDS)


DEFAULT_ROLE_LIMITS: dict[str, dict[str, int | None]] = {
    "user": {"requests_per_minute": 120, "concurrent_streams": 8},
    "admin": {},
}

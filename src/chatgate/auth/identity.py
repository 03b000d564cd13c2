"""Who is making a request: a user, through a login session or an API key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Identity:
    user_id: int
    username: str
    role: str
    settings: dict[str, Any] = field(default_factory=dict)
    api_key_id: int | None = None
    scopes: tuple[str, ...] = ()
    limits: dict[str, Any] = field(default_factory=dict)  # the user's own overrides
    key_limits: dict[str, Any] = field(default_factory=dict)  # the API key's limits
    session_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

"""One usage row as the gateway knows it when a request ends (table ``requests``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class UsageRecord:
    request_id: str
    route: str
    status: str  # ok | error | cancelled | interrupted | rejected
    status_code: int
    user_id: int | None = None
    api_key_id: int | None = None
    model: str | None = None
    engine: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    latency_ms: float = 0.0
    finish_reason: str | None = None
    error: str | None = None

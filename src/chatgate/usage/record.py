"""One usage row as the gateway knows it when a request ends (table ``requests``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a leaf module at run time: metrics import it
    from chatgate.auth.identity import Identity
    from chatgate.engines.upstream.failover import EngineCall
    from chatgate.engines.upstream.stream import StreamStats


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
    queue_ms: float | None = None  # waiting in the gateway's queue for an engine slot
    # Rows written under one key stay one row (a web answer: its message id; a journaled
    # row: the key it was journaled under), see ``usage.rows``.
    record_key: str | None = None


def usage_row(
    call: EngineCall,
    identity: Identity,
    route: str,
    stats: StreamStats,
    *,
    status: str,
    status_code: int,
    error: str | None = None,
    prompt_estimate: int = 0,
) -> UsageRecord:
    """The one usage row of a request that reached the engine stage (web chat and /v1):
    the engine's token counts when it sent them, else the estimates."""
    return UsageRecord(
        request_id=call.request_id,
        route=route,
        status=status,
        status_code=status_code,
        user_id=identity.user_id,
        api_key_id=identity.api_key_id,
        model=call.model.id,
        engine=call.engine,
        prompt_tokens=stats.input_tokens(prompt_estimate),
        completion_tokens=stats.output_tokens(),
        ttft_ms=stats.ttft_ms,
        latency_ms=stats.latency_ms(),
        finish_reason=stats.finish_reason,
        error=error,
        queue_ms=call.queue_ms,
    )

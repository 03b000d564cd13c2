"""One engine replica as the router sees it: address, timeouts and bounded routing state."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from chatgate.engines.upstream.breaker import CircuitBreaker
from chatgate.engines.upstream.scrape import EngineMetrics, ScrapeState
from chatgate.settings import Settings

# What a model's engine does: generate text (chat, completions; perhaps embeddings too),
# or only embed (a pooling model: /v1/embeddings, and no generation at all).
Task = Literal["generate", "embed"]


@dataclass(frozen=True)
class Timeouts:
    connect: float
    first_token: float
    idle: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Timeouts:
        """The gateway-wide defaults (a profile may override them per engine)."""
        return cls(
            settings.engine_connect_timeout,
            settings.engine_ttft_timeout,
            settings.engine_idle_timeout,
        )


@dataclass
class Endpoint:
    """One OpenAI-compatible engine server (a replica) for a model.

    All routing state is fixed fields here, so it stays bounded per endpoint.
    """

    name: str
    base_url: str  # ends with /v1
    upstream_model: str
    outstanding: int = 0
    # Requests it generates at once (llama-server's slots, vLLM's max_num_seqs); None:
    # unknown, the pool assumes a default. Learned from the engine or its profile.
    capacity: int | None = None
    healthy: bool = True
    last_error: str | None = None
    kind: Literal["attached", "managed"] = "attached"  # managed: chatgate started it
    timeouts: Timeouts | None = None  # overrides the client's defaults for this replica
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    metrics: EngineMetrics | None = None  # last scrape of the engine's own /metrics
    scrape: ScrapeState = field(default_factory=ScrapeState)
    # An engine without /health: once it answered 404 the probe asks /v1/models.
    probe_models: bool = False
    # Its supervisor gave up on it (crash loop): why, in a sentence users may see.
    failure: str | None = None
    restarts: int = 0  # by its supervisor (all causes), and of those:
    wedged_restarts: int = 0  # because it produced no token for too long
    last_success: float | None = None  # monotonic time of the last answer that worked
    last_probe: float | None = None  # of the monitor's last 1-token generation
    probe_error: str | None = None  # why that generation failed
    task: Task = "generate"  # "embed": the probe asks for an embedding (set by the registry)

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def public(self, now: float | None = None) -> dict[str, Any]:
        """The admin view (engine URLs are for admins only, never in user-facing lists)."""
        return {
            "name": self.name,
            "base_url": self.base_url,
            "kind": self.kind,
            "healthy": self.healthy,
            "circuit": self.breaker.state(time.monotonic() if now is None else now),
            "outstanding": self.outstanding,
            "capacity": self.capacity,
            "last_error": self.last_error,
            "failure": self.failure,
            "metrics": self.metrics.public() if self.metrics is not None else None,
            "consecutive_failures": self.breaker.consecutive_failures,
        }

"""Which models exist and which engine endpoints serve them.

Clients name public model ids (or aliases); the gateway sends the engine's own
model name upstream and never accepts an engine URL from a client.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from chatgate.errors import APIError

DEFAULT_ALIAS = "default"


@dataclass
class Endpoint:
    """One OpenAI-compatible engine server (a replica) for a model."""

    name: str
    base_url: str  # ends with /v1
    upstream_model: str
    supervised: bool = False
    outstanding: int = 0
    healthy: bool = True
    last_error: str | None = None

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")


@dataclass
class ModelEntry:
    id: str
    name: str
    endpoints: list[Endpoint]
    aliases: list[str] = field(default_factory=list)
    default_params: dict[str, Any] = field(default_factory=dict)
    context_length: int | None = None
    owned_by: str = "chatgate"
    enabled: bool = True

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "aliases": self.aliases,
            "default_params": self.default_params,
            "context_length": self.context_length,
            "healthy": any(ep.healthy for ep in self.endpoints),
        }


def normalise_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class ModelRegistry:
    def __init__(self, default_model: str) -> None:
        self._models: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}
        self.default_model = default_model

    def add(self, entry: ModelEntry) -> None:
        self._models[entry.id] = entry
        for alias in entry.aliases:
            self._aliases[alias] = entry.id

    def models(self) -> list[ModelEntry]:
        return [entry for entry in self._models.values() if entry.enabled]

    def endpoints(self) -> Iterable[Endpoint]:
        for entry in self._models.values():
            yield from entry.endpoints

    def resolve(self, name: str | None) -> ModelEntry:
        """The enabled model for a public id or alias (None or 'default': the default)."""
        wanted = name or DEFAULT_ALIAS
        if wanted == DEFAULT_ALIAS and DEFAULT_ALIAS not in self._aliases:
            wanted = self.default_model
            if wanted not in self._models and self._models:
                wanted = next(iter(self._models))
        # A model's own id wins over another model's alias of the same name.
        model_id = wanted if wanted in self._models else self._aliases.get(wanted, wanted)
        entry = self._models.get(model_id)
        if entry is None or not entry.enabled:
            raise APIError(
                404,
                f"The model '{name}' does not exist or is not enabled",
                "model_not_found",
                param="model",
            )
        return entry

    def pick(self, entry: ModelEntry) -> Endpoint:
        """Least-outstanding healthy endpoint; an unhealthy one only if none is healthy."""
        if not entry.endpoints:
            raise APIError(503, f"No engine serves '{entry.id}'", "engine_unavailable")
        healthy = [ep for ep in entry.endpoints if ep.healthy] or entry.endpoints
        return min(healthy, key=lambda ep: ep.outstanding)

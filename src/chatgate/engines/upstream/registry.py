"""Which models exist and which engine endpoints serve them.

Clients name public model ids (or aliases); the gateway sends the engine's own
model name upstream and never accepts an engine URL from a client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from chatgate.engines.catalog.profiles import EmbeddingsSpec
from chatgate.engines.upstream.breaker import CircuitPolicy
from chatgate.engines.upstream.endpoint import Endpoint, Task
from chatgate.engines.upstream.routing import AffinityMap, choose
from chatgate.errors import APIError

log = logging.getLogger("chatgate.engines")

DEFAULT_ALIAS = "default"
DEFAULT_AFFINITY_SESSIONS = 10_000
SWITCH_RETRY_AFTER = 10  # seconds: a drain-and-restart takes at least this long


BASE_ONLY = -1  # AdapterRoute.lora_id of a base model whose engine has adapters loaded


@dataclass(frozen=True)
class AdapterRoute:
    """A fine-tuned version served by its base model's engines (finetune/deploy.py): how
    a request names it there. llama.cpp: the adapter's index among the engine's ``--lora``
    files (the per-request ``lora`` field; the others stay at scale 0); vLLM: the name it
    was loaded under (the request's ``model``)."""

    engine: Literal["llamacpp", "vllm"]
    lora_id: int = BASE_ONLY
    lora_name: str = ""

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """The engine request for this version (or, ``BASE_ONLY``, for the base model on
        an engine with adapters loaded) from the one for its base model."""
        if self.engine == "vllm":
            return {**body, "model": self.lora_name} if self.lora_name else body
        if self.lora_id == BASE_ONLY:
            # Explicitly none: a request without ``lora`` may run on a slot that still
            # has the previous request's adapter applied. Unlisted adapters get scale 0.
            return {**body, "lora": [{"id": 0, "scale": 0.0}]}
        return {**body, "lora": [{"id": self.lora_id, "scale": 1.0}]}


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
    draining: bool = False  # being switched: new requests get 503, in-flight ones finish
    profile_id: str | None = None
    # Its engines also serve /v1/embeddings (the profile's ``embeddings:``); None: they don't.
    embeddings: EmbeddingsSpec | None = None
    # "embed": its engines only embed (the profile's ``task``): no chat, probed by a vector.
    task: Task = "generate"
    # A fine-tuned version on its base model's engines (shared endpoints); None: the model.
    adapter: AdapterRoute | None = None
    # The admission pool it waits in when it shares another model's engines (a version:
    # its base's id), so the engines' slots are counted once; None: its own.
    pool: str | None = None

    @property
    def pool_id(self) -> str:
        return self.pool or self.id

    def engine_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """The request as one replica receives it (``model``: its engine name), with the
        version's adapter selected: the one place every route's payload is finalised."""
        return body if self.adapter is None else self.adapter.apply(body)

    def outstanding(self) -> int:
        return sum(ep.outstanding for ep in self.endpoints)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "aliases": self.aliases,
            "default_params": self.default_params,
            "context_length": self.context_length,
            "healthy": any(ep.healthy for ep in self.endpoints),
            # "embed": not a chat model (the web chat must not offer it).
            "task": self.task,
        }


def normalise_base_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


class ModelRegistry:
    def __init__(
        self,
        default_model: str,
        *,
        circuit_failures: int = 3,
        circuit_open_seconds: float = 15.0,
        affinity_sessions: int = DEFAULT_AFFINITY_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._models: dict[str, ModelEntry] = {}
        self._aliases: dict[str, str] = {}
        self.default_model = default_model
        self.policy = CircuitPolicy(circuit_failures, circuit_open_seconds)
        self._affinity = AffinityMap(affinity_sessions)
        self.clock = clock

    def configure_routing(
        self, circuit_failures: int, circuit_open_seconds: float, affinity_sessions: int
    ) -> None:
        """Apply the settings to a registry built elsewhere (tests, the app factory)."""
        self.policy = CircuitPolicy(circuit_failures, circuit_open_seconds)
        if affinity_sessions != self._affinity.capacity:
            self._affinity = AffinityMap(affinity_sessions)

    def add(self, entry: ModelEntry) -> None:
        for endpoint in entry.endpoints:  # how the monitor proves them (health.py)
            endpoint.task = entry.task
        self._models[entry.id] = entry
        for alias in entry.aliases:
            self._aliases[alias] = entry.id

    def get(self, model_id: str) -> ModelEntry | None:
        """The model with this id, enabled or not (no alias lookup)."""
        return self._models.get(model_id)

    def remove(self, model_id: str) -> ModelEntry | None:
        entry = self._models.pop(model_id, None)
        if entry is not None:
            for alias in [a for a, target in self._aliases.items() if target == model_id]:
                del self._aliases[alias]
        return entry

    def models(self) -> list[ModelEntry]:
        return [entry for entry in self._models.values() if entry.enabled]

    def chat_models(self) -> list[ModelEntry]:
        """The enabled models one can chat with (embedding-only ones left out)."""
        return [entry for entry in self.models() if entry.task == "generate"]

    def all_models(self) -> list[ModelEntry]:
        return list(self._models.values())

    def endpoints(self) -> Iterable[Endpoint]:
        for entry in self._models.values():
            yield from entry.endpoints

    def resolve(self, name: str | None) -> ModelEntry:
        """The enabled model for a public id or alias (None or 'default': the default),
        ready for a new generation (503 while it is being switched). Every generating route
        (chat, completions, messages, responses, the web chat) resolves here, so an
        embedding-only model is refused here: a 400 naming ``model``, never relayed to an
        engine that cannot generate."""
        entry = self._ready(self.lookup(name))
        if entry.task == "embed":
            raise APIError(
                400,
                f"The model '{entry.id}' only serves embeddings (/v1/embeddings): it does"
                " not support chat completions",
                "model_not_supported",
                param="model",
            )
        return entry

    @staticmethod
    def _ready(entry: ModelEntry) -> ModelEntry:
        """The entry, unless it is being switched (a 503 to retry, for every route)."""
        if entry.draining:
            raise APIError(
                503,
                f"The model '{entry.id}' is being switched; try again shortly",
                "model_switching",
                headers={"Retry-After": str(SWITCH_RETRY_AFTER)},
            )
        return entry

    def lookup(self, name: str | None) -> ModelEntry:
        """Like ``resolve`` but a model being switched is still found (listings)."""
        wanted = name or DEFAULT_ALIAS
        if wanted == DEFAULT_ALIAS and DEFAULT_ALIAS not in self._aliases:
            wanted = self.default_model
            if wanted not in self._models and self._models:
                wanted = self._fallback_default()
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

    def _fallback_default(self) -> str:
        """The default when the configured one is not served: the first model one can
        chat with (an embedding-only model only when there is nothing else)."""
        chat = [model_id for model_id, e in self._models.items() if e.task == "generate"]
        return chat[0] if chat else next(iter(self._models))

    def resolve_embeddings(self, name: str | None) -> ModelEntry:
        """Like ``resolve``, for ``/v1/embeddings``: a model whose profile declares none is
        the client's mistake (400 naming ``model``), as OpenAI answers for a chat model."""
        entry = self._ready(self.lookup(name))
        if entry.embeddings is None:
            raise APIError(
                400,
                f"The model '{entry.id}' does not support embeddings",
                "model_not_supported",
                param="model",
            )
        return entry

    def usable(self, entry: ModelEntry, exclude: Iterable[str] = ()) -> list[Endpoint]:
        """Endpoints whose circuit lets a request through; healthy ones when there are any
        (a replica only the probe doubts is still better than refusing the request)."""
        now = self.clock()
        skip = set(exclude)
        allowed = [
            ep
            for ep in entry.endpoints
            if ep.name not in skip and ep.failure is None and ep.breaker.allows(now)
        ]
        return [ep for ep in allowed if ep.healthy] or allowed

    def ensure_available(self, entry: ModelEntry) -> None:
        """503 now (before limits are charged) when no replica could take a request."""
        if not self.usable(entry):
            raise _unavailable(entry, self.policy)

    def pick(
        self,
        entry: ModelEntry,
        affinity_key: str | None = None,
        exclude: Iterable[str] = (),
    ) -> Endpoint:
        """Least-loaded usable endpoint; the conversation's previous one while it is not
        much busier (its prefix cache is warm)."""
        candidates = self.usable(entry, exclude)
        if not candidates:
            raise _unavailable(entry, self.policy)
        key = f"{entry.id}\0{affinity_key}" if affinity_key else None
        chosen = choose(candidates, self._affinity.get(key) if key else None)
        if key:
            self._affinity.put(key, chosen.name)
        chosen.breaker.picked(self.clock(), self.policy)
        return chosen

    def record_success(self, endpoint: Endpoint) -> None:
        endpoint.breaker.succeeded()
        endpoint.healthy = True
        endpoint.last_error = None
        endpoint.last_success = self.clock()

    def record_failure(self, endpoint: Endpoint, error: str) -> None:
        """Passive health: an engine-side failure (never a client's 4xx)."""
        endpoint.last_error = error[:500]
        if endpoint.breaker.failed(self.clock(), self.policy):
            if endpoint.healthy:
                log.warning("engine %s taken out of rotation: %s", endpoint.name, error)
            endpoint.healthy = False


def _unavailable(entry: ModelEntry, policy: CircuitPolicy) -> APIError:
    if not entry.endpoints:
        return APIError(503, f"No engine serves '{entry.id}'", "engine_unavailable")
    failed = [ep.failure for ep in entry.endpoints if ep.failure]
    if len(failed) == len(entry.endpoints):
        # Not a blip to retry: an administrator has to act (the reason says what happened).
        return APIError(503, failure_sentence(entry.id, failed[0]), "engine_failed")
    return APIError(
        503,
        f"No engine for '{entry.id}' is available right now (all {len(entry.endpoints)}"
        " failing); try again shortly",
        "engine_unavailable",
        headers={"Retry-After": str(max(1, round(policy.open_seconds)))},
    )


def failure_sentence(model_id: str, failure: str) -> str:
    """The first sentence of a supervisor's diagnosis, for users."""
    first = failure.split("\n", 1)[0]
    end = first.find(". ")
    return f"The engine for '{model_id}' has failed: {first[: end + 1] if end > 0 else first}"

"""Fine-tuned versions as models: their ids, the list of deployed ones, and their registry
entries on the base model's engines.

A version is the model id ``<base>:<name>@<version>`` (``smollm2-135m:zanthia@3``), the
registered MLflow model ``<base>-<name>``'s version. It has no engine of its own: its
entry shares the base model's endpoints and selects its adapter per request
(``AdapterRoute``): llama.cpp loads every deployed GGUF LoRA at start with
``--lora-init-without-apply`` (scale 0: the base model is unchanged) and a request picks
one by index; vLLM loads the PEFT adapter under the version's id.

What the fleet should serve is in the database (``desired.py``); what this host's engine
loaded is its *applied list*, ``<data dir>/adapters/deployed.json`` (local paths of the
downloaded files), written by the host's engine leader (``reconcile.py``) and read by the
engine's launch plan at every start; its order is the llama.cpp adapters' order.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from chatgate.engines.upstream.registry import BASE_ONLY, AdapterRoute, ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.settings import Settings

_SPEC = re.compile(r"^(?P<model>[A-Za-z0-9][A-Za-z0-9._:-]*)@(?P<ref>[A-Za-z0-9_-]+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class VersionRef:
    """What an admin names: a base model, a fine-tune name, a version number or alias."""

    base: str
    name: str
    ref: str

    @property
    def registered(self) -> str:
        """The MLflow registered model (finetune.py names it so)."""
        return f"{self.base}-{self.name}"

    def model_id(self, version: int) -> str:
        return f"{self.base}:{self.name}@{version}"


def parse_spec(spec: str, bases: list[str]) -> VersionRef:
    """``base:name@ref`` or the registered name ``base-name@ref`` (the longest known base
    model id that prefixes it); ``ref`` a version number or an alias (``champion``)."""
    found = _SPEC.match(spec.strip())
    if found is None:
        raise _bad(spec)
    model, ref = found["model"], found["ref"]
    if ":" in model:
        base, _, name = model.partition(":")
    else:
        prefixes = [b for b in bases if model.startswith(b + "-")]
        if not prefixes:
            raise _bad(spec)
        base = max(prefixes, key=len)
        name = model[len(base) + 1 :]
    if not base or not _NAME.match(name):
        raise _bad(spec)
    return VersionRef(base, name, ref)


def parse_model_id(model_id: str) -> VersionRef | None:
    """The parts of a version's model id; None for any other model id."""
    found = _SPEC.match(model_id)
    if found is None or ":" not in found["model"] or not found["ref"].isdigit():
        return None
    base, _, name = found["model"].partition(":")
    return VersionRef(base, name, found["ref"]) if base and _NAME.match(name) else None


def _bad(spec: str) -> APIError:
    return APIError(
        400,
        f"'{spec}' names no fine-tuned version: use BASE:NAME@VERSION or BASE:NAME@ALIAS"
        " (e.g. smollm2-135m:zanthia@3, smollm2-135m:zanthia@champion)",
        "invalid_model_version",
        param="model",
    )


@dataclass(frozen=True)
class Deployment:
    """One deployed version and its files (downloaded by tools/train/registry.py)."""

    model_id: str
    base: str
    name: str
    version: int
    gguf: str
    adapter_dir: str | None = None


def deployments_file(settings: Settings) -> Path:
    return settings.data_dir / "adapters" / "deployed.json"


def load(settings: Settings) -> list[Deployment]:
    path = deployments_file(settings)
    if not path.is_file():
        return []
    items = json.loads(path.read_text())
    return [Deployment(**item) for item in items if isinstance(item, dict)]


def save(settings: Settings, deployments: list[Deployment]) -> None:
    """Atomically (the engine's launch plan may read it at any time)."""
    path = deployments_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    staging.write_text(json.dumps([asdict(d) for d in deployments], indent=2))
    os.replace(staging, path)


def with_deployment(current: list[Deployment], new: Deployment) -> list[Deployment]:
    """The list with ``new`` replacing the same id (its place kept) or appended."""
    ids = [d.model_id for d in current]
    if new.model_id in ids:
        return [new if d.model_id == new.model_id else d for d in current]
    return [*current, new]


def for_base(deployments: list[Deployment], base: str) -> list[Deployment]:
    return [d for d in deployments if d.base == base]


def lora_files(settings: Settings, base: str) -> list[Path]:
    """The GGUF LoRAs a llama.cpp engine for ``base`` loads, in adapter-index order."""
    return [Path(d.gguf) for d in for_base(load(settings), base)]


def vllm_modules(settings: Settings, base: str) -> list[str]:
    """``--lora-modules`` values (``name=path``) for a vLLM engine for ``base``."""
    return [
        f"{d.model_id}={d.adapter_dir}" for d in for_base(load(settings), base) if d.adapter_dir
    ]


def route_for(
    engine: Literal["llamacpp", "vllm"], deployments: list[Deployment], model_id: str
) -> AdapterRoute:
    ids = [d.model_id for d in deployments]
    return AdapterRoute(engine, lora_id=ids.index(model_id), lora_name=model_id)


def routes(
    engine: Literal["llamacpp", "vllm"], applied: list[Deployment], served: set[str]
) -> dict[str, AdapterRoute]:
    """The routes of the ``served`` ids among ``applied`` (one base's list, in the engine's
    adapter order: a llama.cpp index counts every loaded adapter, served or not)."""
    return {
        d.model_id: route_for(engine, applied, d.model_id) for d in applied if d.model_id in served
    }


def base_route(
    engine: Literal["llamacpp", "vllm"], applied: list[Deployment]
) -> AdapterRoute | None:
    """A llama.cpp base model on an engine with adapters loaded names none explicitly."""
    return AdapterRoute("llamacpp", lora_id=BASE_ONLY) if engine == "llamacpp" and applied else None


def sync_entries(
    registry: ModelRegistry,
    base_id: str,
    served: dict[str, AdapterRoute],
    own_route: AdapterRoute | None = None,
) -> bool:
    """Make ``base_id``'s version entries exactly ``served`` (id -> route): added, removed,
    rebuilt when the base entry was replaced (a switch away and back, a follower's new
    leader). No base entry: none. ``own_route``: the base model's own (``BASE_ONLY`` on a
    llama.cpp engine with adapters loaded). Returns whether anything changed."""
    base = registry.get(base_id)
    current = {e.id: e for e in versions_of(registry, base_id)}
    wanted = served if base is not None else {}
    changed = False
    for model_id in current.keys() - wanted.keys():
        registry.remove(model_id)
        changed = True
    if base is None:
        return changed
    if base.adapter != own_route:
        base.adapter = own_route
        changed = True
    for model_id, route in wanted.items():
        entry = current.get(model_id)
        if entry is None or entry.endpoints is not base.endpoints or entry.adapter != route:
            registry.remove(model_id)
            registry.add(version_entry(base, model_id, route))
            changed = True
        else:
            entry.enabled = base.enabled
    return changed


def version_entry(base: ModelEntry, model_id: str, route: AdapterRoute) -> ModelEntry:
    ref = parse_model_id(model_id)
    label = f"{ref.name} v{ref.ref}" if ref else model_id
    return ModelEntry(
        id=model_id,
        name=f"{base.name} · {label}",
        endpoints=base.endpoints,  # the same replicas (and their load accounting)
        default_params=dict(base.default_params),
        context_length=base.context_length,
        enabled=base.enabled,
        profile_id=base.profile_id,
        adapter=route,
        pool=base.pool_id,  # the base's slots, not a second set of them
    )


def versions_of(registry: ModelRegistry, base_id: str) -> list[ModelEntry]:
    """The version entries served on ``base_id``'s engines (they drain with it)."""
    return [
        e
        for e in registry.all_models()
        if e.adapter is not None
        and e.adapter.lora_id != BASE_ONLY
        and (ref := parse_model_id(e.id))
        and ref.base == base_id
    ]

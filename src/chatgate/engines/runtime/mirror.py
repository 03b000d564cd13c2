"""The leader's managed registry entries as fleet state, and a follower's copy of them.

The leader publishes ``snapshot()``: its active profile, default model, every registry
entry its manager owns (id, engine URL, draining, failure) and the switch's progress. A
follower ``apply()``-s it: same entries pointing at the leader's engine (endpoint objects
kept while the URL stays, so in-flight counts survive), same draining flags, same
default. A pending switch request drains the previous model at once, before the leader
even picked it up, so every gateway refuses new requests for it from the same moment.

Each entry also carries the fine-tuned versions served on it (finetune/deploy.py: id,
adapter route, draining) and whether its base requests name no adapter, so a follower
registers exactly the versions the leader's engine serves, and drops them with it.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from chatgate.engines.runtime.fleet_store import Doc
from chatgate.engines.runtime.launch import profile_slots
from chatgate.engines.runtime.manager import EngineManager, entry_for_profile
from chatgate.engines.runtime.switch import SwitchStatus
from chatgate.engines.upstream.endpoint import Endpoint, Timeouts
from chatgate.engines.upstream.registry import BASE_ONLY, AdapterRoute, ModelEntry
from chatgate.finetune import deploy
from chatgate.settings import Settings

log = logging.getLogger("chatgate.engines")


def snapshot(manager: EngineManager, leader: str) -> Doc:
    registry = manager.registry
    entries: list[dict[str, Any]] = []
    for model_id in sorted(manager.owned):
        entry = registry.get(model_id)
        if entry is None:
            continue
        endpoint = entry.endpoints[0] if entry.endpoints else None
        entries.append(
            {
                "id": model_id,
                "base_url": endpoint.base_url if endpoint else None,
                "draining": entry.draining,
                "failure": endpoint.failure if endpoint else None,
                "base_adapter": entry.adapter is not None,
                "versions": _versions(manager, model_id),
            }
        )
    return {
        "leader": leader,
        "active": manager.active_profile,
        "default_model": registry.default_model,
        "entries": entries,
        "switch": manager.switch.public() if manager.switch else None,
        "drain_id": manager.drain_id,
    }


def _versions(manager: EngineManager, base: str) -> list[Doc]:
    return [
        {
            "id": entry.id,
            "engine": entry.adapter.engine,
            "lora_id": entry.adapter.lora_id,
            "lora_name": entry.adapter.lora_name,
            "draining": entry.draining,
        }
        for entry in sorted(deploy.versions_of(manager.registry, base), key=lambda e: e.id)
        if entry.adapter is not None
    ]


def apply(
    manager: EngineManager, settings: Settings, state: Doc | None, request: Doc | None
) -> None:
    """Make this follower's registry and switch status match the fleet state."""
    registry = manager.registry
    if state is not None:
        wanted = {str(e["id"]): e for e in state.get("entries", [])}
        for model_id in sorted(manager.owned - wanted.keys()):
            registry.remove(model_id)
            manager.owned.discard(model_id)
            deploy.sync_entries(registry, model_id, {})  # its versions go with it
        for item in wanted.values():
            _mirror_entry(manager, settings, item)
            _mirror_versions(manager, item)
        manager.active_profile = state.get("active")
        manager.drain_id = state.get("drain_id")
        if state.get("default_model"):
            registry.default_model = str(state["default_model"])
    published = (state or {}).get("switch")
    _follow_switch(manager, published, request)


def _follow_switch(manager: EngineManager, published: Doc | None, request: Doc | None) -> None:
    shown = published
    if request is not None and (published is None or published.get("id") != request.get("id")):
        shown = request  # asked, not yet taken up by the leader
    if shown is not None and (manager.switch is None or manager.switch.public() != shown):
        manager.switch = SwitchStatus.from_public(shown)
    pending = request is not None and not (
        published and published.get("id") == request.get("id") and published.get("finished_at")
    )
    previous = request.get("previous") if request is not None and pending else None
    entry = manager.registry.get(str(previous)) if previous else None
    if entry is not None:
        entry.draining = True


def _mirror_entry(manager: EngineManager, settings: Settings, item: Doc) -> None:
    model_id = str(item["id"])
    url = item.get("base_url")
    registry = manager.registry
    entry = registry.get(model_id)
    if entry is not None and model_id not in manager.owned:
        return  # attached by this gateway's own configuration: it keeps it
    urls = [url] if url else []
    if entry is None or [ep.base_url for ep in entry.endpoints] != urls:
        entry = _built(manager, settings, model_id, url)
        registry.remove(model_id)
        registry.add(entry)
        manager.owned.add(model_id)
    entry.draining = bool(item.get("draining"))
    entry.enabled = manager.is_enabled(model_id)
    for endpoint in entry.endpoints:
        endpoint.failure = item.get("failure")


def _mirror_versions(manager: EngineManager, item: Doc) -> None:
    """The versions the leader serves on this entry's engine, routed the same way."""
    model_id = str(item["id"])
    if model_id not in manager.owned:
        return  # attached here: this gateway's own reconciler registers its versions
    routes: dict[str, AdapterRoute] = {}
    draining: dict[str, bool] = {}
    for version in item.get("versions") or []:
        engine: Literal["llamacpp", "vllm"] = (
            "vllm" if version.get("engine") == "vllm" else "llamacpp"
        )
        route = AdapterRoute(engine, int(version["lora_id"]), str(version["lora_name"]))
        routes[str(version["id"])] = route
        draining[str(version["id"])] = bool(version.get("draining"))
    own = AdapterRoute("llamacpp", BASE_ONLY) if item.get("base_adapter") else None
    deploy.sync_entries(manager.registry, model_id, routes, own)
    for version_id, drained in draining.items():
        entry = manager.registry.get(version_id)
        if entry is not None:
            entry.draining = drained


def _built(
    manager: EngineManager, settings: Settings, model_id: str, url: str | None
) -> ModelEntry:
    profile = manager.profiles.get(model_id)
    if profile is None:  # mismatched configurations: route to it all the same
        log.warning("the fleet runs %s, which has no profile on this gateway", model_id)
        endpoint = Endpoint(name=f"{model_id}@leader", base_url=url or "", upstream_model=model_id)
        return ModelEntry(id=model_id, name=model_id, endpoints=[endpoint] if url else [])
    timeouts = Timeouts.from_settings(settings)
    entry = entry_for_profile(profile, url or "", kind="managed", timeouts=timeouts)
    if not url:
        entry.endpoints = []  # the leader is starting it: 503 until it runs
    for endpoint in entry.endpoints:
        endpoint.capacity = profile_slots(profile, settings)
    return entry

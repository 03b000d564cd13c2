"""Engines chatgate runs itself, and switching the active model profile.

A switch drains the current model (new requests get 503 ``model_switching``,
in-flight ones may finish within ``switch_drain_seconds``), stops its engine,
starts the target profile's engine and waits until it answers. If the new
engine does not come up, the previous profile is started again.

Supervisors are thread-based (see ``supervisor.py``), so engine processes stay
tied to this process. With several gateway processes on one host (``--workers N``,
replicas), only the leader runs engines and switches; a switch asked of any of them goes
through their one switch slot (``fleet``, see ``coordinator.py``), and the previous model
drains on every one of them before its engine stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from chatgate.engines.catalog.profiles import ModelProfile, ProfileError, find_profile
from chatgate.engines.runtime.embedded import EngineSetupError
from chatgate.engines.runtime.launch import LaunchError, plan_launch, profile_slots, supervisor_for
from chatgate.engines.runtime.supervisor import EngineSupervisor, SupervisorStatus
from chatgate.engines.runtime.switch import SwitchStatus
from chatgate.engines.upstream.endpoint import Endpoint, Timeouts
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.settings import Settings

log = logging.getLogger("chatgate.engines")

STOP_TIMEOUT_S = 30.0
DRAIN_POLL_S = 0.2
# A request that resolved the model just before draining began may still be on its way to
# an engine (limits, history): it is counted as outstanding within this time.
DRAIN_SETTLE_S = 0.5
# With a fleet, the other gateways learn of the drain within one poll of the shared state.
FLEET_SETTLE_S = 1.0
SupervisorFactory = Callable[[ModelProfile, Settings], EngineSupervisor]
ActiveCallback = Callable[[str], Awaitable[None]]


class SwitchFleet(Protocol):
    """The fleet side of switching (``coordinator.EngineCoordinator``)."""

    async def claim(self, status: SwitchStatus) -> bool:
        """Take the fleet's one switch slot; False while another switch is pending/running."""
        ...

    async def outstanding(self, switch_id: str) -> int:
        """In-flight requests the other gateways still report for this switch's drain."""
        ...

    def changed(self) -> None:
        """Something the followers mirror changed: publish it soon."""
        ...


@dataclass
class ManagedEngine:
    profile: ModelProfile
    supervisor: EngineSupervisor


def entry_for_profile(
    profile: ModelProfile, base_url: str, *, kind: str, timeouts: Timeouts | None = None
) -> ModelEntry:
    """The registry entry of a profile served by one engine at ``base_url``;
    ``timeouts``: the gateway's defaults, which the profile may override."""
    netloc = base_url.split("://", 1)[-1].removesuffix("/v1")
    endpoint = Endpoint(name=f"{profile.id}@{netloc}", base_url=base_url, upstream_model=profile.id)
    if timeouts is not None:
        endpoint.timeouts = profile.endpoint_timeouts(timeouts)
    endpoint.kind = "managed" if kind == "managed" else "attached"
    entry = ModelEntry(
        id=profile.id,
        name=profile.name,
        endpoints=[endpoint],
        aliases=list(profile.aliases),
        default_params=dict(profile.default_params),
        context_length=profile.max_model_len,
        embeddings=profile.embeddings,
        task=profile.task,
    )
    entry.profile_id = profile.id
    return entry


class EngineManager:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        profiles: dict[str, ModelProfile],
        *,
        supervisor_factory: SupervisorFactory = supervisor_for,
        on_active: ActiveCallback | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self.profiles = profiles
        self._factory = supervisor_factory
        self._on_active = on_active
        self._engines: dict[str, ManagedEngine] = {}  # at most one per profile
        self.active_profile: str | None = None
        self.switch: SwitchStatus | None = None
        # A restart that is no switch (a fine-tuned version deployed: finetune/rollout.py)
        # drains under this id; the fleet's followers report their in-flight requests
        # against it as they do for a switch (coordinator.py).
        self.drain_id: str | None = None
        self.disabled: set[str] = set()  # ids admins disabled (models or profiles: bounded)
        self._task: asyncio.Task[None] | None = None
        self.fleet: SwitchFleet | None = None  # set when several processes may serve
        # Registry entries this manager put there (its engines, or the leader's mirrored).
        self.owned: set[str] = set()

    # ----- queries

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    def switch_unavailable_reason(self) -> str | None:
        """Why this gateway cannot switch models (None: it can; every worker can now)."""
        return None

    def running(self) -> bool:
        """A switch runs in this process (the leader's)."""
        return self._task is not None and not self._task.done()

    def has_engines(self) -> bool:
        return bool(self._engines)

    def supervisor(self, profile_id: str) -> EngineSupervisor | None:
        engine = self._engines.get(profile_id)
        return engine.supervisor if engine else None

    def starting(self) -> list[ManagedEngine]:
        """Managed engines not (yet) routable: being started by a switch."""
        return [e for pid, e in self._engines.items() if not self._routes_to(pid, e)]

    def _routes_to(self, profile_id: str, engine: ManagedEngine) -> bool:
        entry = self._registry.get(profile_id)
        urls = [ep.base_url for ep in entry.endpoints] if entry else []
        return engine.supervisor.base_url in urls

    def is_enabled(self, model_id: str) -> bool:
        return model_id not in self.disabled

    def set_enabled(self, model_id: str, enabled: bool) -> None:
        entry = self._registry.get(model_id)
        if entry is None and model_id not in self.profiles:
            raise APIError(404, f"No model or profile '{model_id}'", "model_not_found")
        if enabled:
            self.disabled.discard(model_id)
        else:
            self.disabled.add(model_id)
        if entry is not None:
            entry.enabled = enabled

    # ----- adoption (engines the CLI started before the app)

    def adopt(self, profile_id: str, supervisor: EngineSupervisor) -> None:
        """Take over an engine started for ``profile_id`` (e.g. the embedded one)."""
        entry = self._registry.get(profile_id)
        if entry is None:
            log.warning("cannot adopt engine %s: no such model in the registry", profile_id)
            return
        profile = self.profiles.get(profile_id)
        for endpoint in entry.endpoints:
            if endpoint.base_url == supervisor.base_url:
                endpoint.kind = "managed"
                if profile is not None:
                    endpoint.capacity = profile_slots(profile, self._settings)
        self._follow(profile_id, supervisor)
        if profile is None:
            log.warning("engine %s has no model profile: it cannot be switched", profile_id)
            return
        entry.profile_id = profile_id
        self._engines[profile_id] = ManagedEngine(profile, supervisor)
        self.owned.add(profile_id)
        self.active_profile = profile_id

    def _follow(self, profile_id: str, supervisor: EngineSupervisor) -> None:
        """Keep the model's endpoint in step with its supervisor: a crash loop takes it
        out of routing at once, with the diagnosis requests then fail with."""
        loop = asyncio.get_running_loop()

        def changed(status: SupervisorStatus) -> None:  # the supervisor's thread
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(self._apply, profile_id, status)

        supervisor.add_listener(changed)
        self._apply(profile_id, supervisor.status())

    def _apply(self, profile_id: str, status: SupervisorStatus) -> None:
        entry = self._registry.get(profile_id)
        for endpoint in entry.endpoints if entry is not None else []:
            if endpoint.base_url == status.base_url:
                endpoint.failure = status.last_error if status.state == "failed" else None
                endpoint.restarts = status.restarts
                endpoint.wedged_restarts = status.wedged_restarts
        self._changed()

    def _changed(self) -> None:
        if self.fleet is not None:
            self.fleet.changed()

    # ----- switching

    def begin_switch(self, target: str) -> SwitchStatus:
        """Validate and start a switch in this process; its status is returned at once."""
        status = self._validated(target)
        self.run(status)
        return status

    async def request_switch(self, target: str) -> SwitchStatus:
        """Validate a switch and hand it to whoever runs engines: this process alone, or
        the fleet's leader through the switch slot (the previous model drains here at once)."""
        if self.fleet is None:
            return self.begin_switch(target)
        status = self._validated(target)
        before, self.switch = self.switch, status  # the leader's loop may run it at once
        taken = False
        try:
            taken = await self.fleet.claim(status)
        finally:
            if not taken and self.switch is status:
                self.switch = before
        if not taken:
            raise APIError(409, "Another model switch is in progress", "switch_in_progress")
        entry = self._registry.get(status.previous) if status.previous else None
        if entry is not None:
            entry.draining = True
        self._changed()
        return status

    def _validated(self, target: str) -> SwitchStatus:
        if self.switch is not None and not self.switch.finished:
            raise APIError(
                409, f"A switch to '{self.switch.target}' is in progress", "switch_in_progress"
            )
        profile = self._launchable(target)
        if profile.task == "embed":  # the active model answers the chats
            raise APIError(
                409,
                f"'{profile.id}' only serves embeddings: it cannot be the active chat model",
                "model_not_supported",
            )
        if not self.is_enabled(profile.id):
            raise APIError(409, f"'{profile.id}' is disabled; enable it first", "model_disabled")
        if profile.id == self.active_profile and self._registry.get(profile.id) is not None:
            raise APIError(409, f"'{profile.id}' is already the active model", "already_active")
        status = SwitchStatus(profile.id, self.active_profile, self._settings.switch_drain_seconds)
        status.note(f"switch to {profile.id} requested")
        return status

    def run(self, status: SwitchStatus) -> None:
        """Perform a validated (or taken over) switch in the background."""
        self.switch = status
        status.on_change = self._changed
        try:
            profile = self._launchable(status.target)
        except APIError as exc:
            status.enter("failed", exc.message)
            return
        self._task = asyncio.create_task(self._run_switch(profile, status), name="model-switch")

    def _launchable(self, target: str) -> ModelProfile:
        try:
            profile = find_profile(self.profiles, target)
        except ProfileError as exc:
            raise APIError(404, str(exc), "profile_not_found") from exc
        try:
            plan_launch(profile, self._settings)
        except (LaunchError, ProfileError, EngineSetupError) as exc:
            raise APIError(409, str(exc), "profile_not_launchable") from exc
        return profile

    async def _run_switch(self, profile: ModelProfile, status: SwitchStatus) -> None:
        try:
            previous = self._engines.get(status.previous) if status.previous else None
            self._hold_stale(status)
            if previous is not None:  # ours and running: drain it, then stop it
                await self._drain(previous.profile.id, status)
                await self._stop(previous, status)
            if await self._start(profile, status):
                self._drop(status.previous, keep=profile.id)
                await self._activate(profile.id)
                status.enter("ready", f"{profile.id} is ready and now the default model")
                return
            await self._roll_back(self.profiles.get(status.previous or ""), status)
        except Exception as exc:  # the admin must see it; the details go to the log
            log.exception("switch to %s failed", profile.id)
            status.enter("failed", f"internal error during the switch ({type(exc).__name__})")

    def _hold_stale(self, status: SwitchStatus) -> None:
        """Entries of the switch whose engine is not ours (a leader that died ran it):
        503 model_switching until the switch ends, not requests to a dead engine."""
        for model_id in (status.previous, status.target):
            entry = self._registry.get(model_id) if model_id else None
            if entry is not None and model_id in self.owned and model_id not in self._engines:
                entry.draining = True

    def _drop(self, model_id: str | None, *, keep: str) -> None:
        if model_id and model_id != keep and model_id in self.owned:
            self._registry.remove(model_id)
            self.owned.discard(model_id)

    async def _drain(self, model_id: str, status: SwitchStatus) -> None:
        entry = self._registry.get(model_id)
        if entry is None:
            return
        entry.draining = True
        status.enter("draining", f"draining {model_id}: {entry.outstanding()} request(s) running")
        deadline = time.monotonic() + status.drain_seconds
        # The other gateways see the drain within a poll: their reports must be in first.
        settle = DRAIN_SETTLE_S + (FLEET_SETTLE_S if self.fleet is not None else 0.0)
        await asyncio.sleep(min(settle, status.drain_seconds))
        while await self._outstanding(entry, status) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(DRAIN_POLL_S)
        left = await self._outstanding(entry, status)
        if left:
            status.note(f"drain time over: {left} request(s) still running are cut off")
        else:
            status.note(f"{model_id} drained")

    async def _outstanding(self, entry: ModelEntry, status: SwitchStatus) -> int:
        others = await self.fleet.outstanding(status.id) if self.fleet is not None else 0
        return entry.outstanding() + others

    async def _stop(self, engine: ManagedEngine, status: SwitchStatus) -> None:
        model_id = engine.profile.id
        status.enter("stopping", f"stopping the engine of {model_id}")
        await asyncio.to_thread(engine.supervisor.stop, STOP_TIMEOUT_S)
        # The entry stays (draining: 503 model_switching) until the switch ends.
        self._engines.pop(model_id, None)
        status.note(f"{model_id} stopped")

    async def _start(self, profile: ModelProfile, status: SwitchStatus) -> bool:
        status.enter("starting", f"starting {profile.id} ({profile.engine})")
        supervisor = self._factory(profile, self._settings)
        self._engines[profile.id] = ManagedEngine(profile, supervisor)
        loop = asyncio.get_running_loop()

        def progress(line: str) -> None:
            loop.call_soon_threadsafe(status.note, line)

        supervisor.start()
        ready = await asyncio.to_thread(
            supervisor.wait_ready, self._settings.switch_ready_seconds, progress
        )
        if ready:
            self._register(profile, supervisor)
            return True
        failure = supervisor.status().last_error or supervisor.status().state
        status.note(f"{profile.id} did not become ready: {failure}")
        await asyncio.to_thread(supervisor.stop, STOP_TIMEOUT_S)
        self._engines.pop(profile.id, None)
        return False

    def _register(self, profile: ModelProfile, supervisor: EngineSupervisor) -> None:
        self._registry.remove(profile.id)
        defaults = Timeouts.from_settings(self._settings)
        entry = entry_for_profile(profile, supervisor.base_url, kind="managed", timeouts=defaults)
        for endpoint in entry.endpoints:
            endpoint.capacity = profile_slots(profile, self._settings)
        entry.enabled = self.is_enabled(profile.id)
        self._registry.add(entry)
        self.owned.add(profile.id)
        self._follow(profile.id, supervisor)

    async def _activate(self, profile_id: str) -> None:
        self.active_profile = profile_id
        self._registry.default_model = profile_id
        if self._on_active is not None:
            await self._on_active(profile_id)

    async def _roll_back(self, previous: ModelProfile | None, status: SwitchStatus) -> None:
        self._drop(status.target, keep="")
        if previous is None or previous.id == status.target:
            self._drop(status.previous, keep="")
            self.active_profile = None
            status.enter(
                "failed", f"{status.target} failed to start; no previous engine to restore"
            )
            return
        status.note(f"restoring the previous model {previous.id}")
        if await self._start(previous, status):
            await self._activate(previous.id)
            status.enter("rolled_back", f"{status.target} failed to start; {previous.id} restored")
        else:
            self._drop(previous.id, keep="")
            self.active_profile = None
            status.enter("failed", f"{status.target} failed and {previous.id} did not restart")

    # ----- shutdown

    async def release_engines(self) -> None:
        """Stop every engine this process runs (shutdown, or another took the lead)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        engines = list(self._engines.values())
        self._engines.clear()
        await asyncio.gather(
            *(asyncio.to_thread(e.supervisor.stop, STOP_TIMEOUT_S) for e in engines)
        )

    async def close(self) -> None:
        await self.release_engines()

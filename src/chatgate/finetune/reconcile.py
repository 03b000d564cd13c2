"""Every gateway process makes what it serves match the fleet's desired deployments.

The desired state (``desired.py``: the versions to serve, the splits) is in the database,
written by whichever gateway an admin asked. Each process runs one ``Reconciler``: every
``TICK_SECONDS`` and at once on a fleet event (kind ``deployments``), it reads that state
and, per base model, acts by its role there (``role_of``):

- ``apply``: this process runs the base's engine (standalone, or the host's engine leader,
  ``engines/runtime/leader.py``). Versions missing from the host's applied list are downloaded
  (``rollout.resolve``) and loaded: llama.cpp restarts with drain, vLLM loads at runtime;
  versions no longer wanted are removed the same way. A version that cannot be loaded is
  left out, the engine restored, and the reason written on its desired row (the gateway
  that asked answers 502 with it); it is not tried again until deployed again.
- ``attached``: an engine this gateway was configured with (``--engine``): vLLM adapters
  are loaded on it by every such gateway; a llama.cpp one cannot be restarted by chatgate,
  so only the versions it was started with (the applied list) are served.
- ``follow``: the host's leader runs the engine; its published fleet state carries the
  version entries (``engines/runtime/mirror.py``), nothing to do here.
- ``busy`` (a switch is running) or ``absent`` (the base is not served here): nothing is
  applied; entries of versions of an absent base are removed.

Then every role but ``follow`` registers exactly the versions that are both applied and
desired (``deploy.sync_entries``), so entries come back after a switch away and back and
an undeployed version stops answering at once. The web chat's split table is replaced by
the database's in the same tick (``split.pick`` reads it in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError

from chatgate.engines.runtime.manager import EngineManager
from chatgate.errors import APIError
from chatgate.finetune import deploy, rollout
from chatgate.finetune.deploy import Deployment
from chatgate.finetune.desired import Desired, DesiredSource
from chatgate.finetune.rollout import EngineRestarts, load_vllm, unload_vllm
from chatgate.finetune.split import Split, SplitTable
from chatgate.settings import Settings

log = logging.getLogger("chatgate.finetune")

TICK_SECONDS = 2.0
STARTUP_SECONDS = 10.0  # a database that does not answer must not hold the gateway's start
EVENT_KIND = "deployments"
SOURCE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)

Role = Literal["apply", "busy", "attached", "follow", "absent"]
Engine = Literal["llamacpp", "vllm"]
Resolver = Callable[[Desired], Awaitable[Deployment]]


@dataclass(frozen=True)
class BasePlan:
    """One base model's changes: applied versions kept and dropped, desired ones to add
    (those whose last attempt failed wait for a new deploy)."""

    base: str
    keep: list[Deployment]
    add: list[Desired]
    drop: list[Deployment]

    @property
    def changes(self) -> bool:
        return bool(self.add or self.drop)


def plan(base: str, desired: list[Desired], applied: list[Deployment]) -> BasePlan:
    wanted = {d.model_id: d for d in desired if d.base == base}
    mine = deploy.for_base(applied, base)
    have = {d.model_id for d in mine}
    return BasePlan(
        base,
        keep=[d for d in mine if d.model_id in wanted],
        add=[w for w in wanted.values() if w.model_id not in have and w.error is None],
        drop=[d for d in mine if d.model_id not in wanted],
    )


def role_of(manager: EngineManager, base: str) -> Role:
    if manager.supervisor(base) is not None:
        return "busy" if manager.running() else "apply"
    if manager.registry.get(base) is None:
        return "absent"
    return "follow" if base in manager.owned else "attached"


def engine_of(manager: EngineManager, base: str) -> Engine | None:
    profile = manager.profiles.get(base)
    if profile is None or profile.engine not in ("llamacpp", "vllm"):
        return None
    return "vllm" if profile.engine == "vllm" else "llamacpp"


class Reconciler:
    def __init__(
        self,
        settings: Settings,
        manager: EngineManager,
        source: DesiredSource,
        splits: SplitTable,
        *,
        resolver: Resolver | None = None,
        restarts: EngineRestarts | None = None,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.source = source
        self.splits = splits
        self._resolve: Resolver = resolver or (lambda want: rollout.resolve(settings, want))
        self._restarts = restarts or EngineRestarts(settings, manager)
        self._notify = notify  # tells the fleet a failure was recorded
        self.desired: dict[str, Desired] = {}  # as last read (the admin API waits on it)
        self._attached: dict[str, list[Deployment]] = {}  # vLLM engines attached here
        self._splits_read: dict[str, Split] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.ticks = 0

    # ----- lifecycle

    async def start(self) -> None:
        """Register what is served already (before the first request), then keep going."""
        with contextlib.suppress(*SOURCE_ERRORS):
            await asyncio.wait_for(self.tick(apply=False), STARTUP_SECONDS)
        self._task = asyncio.create_task(self._run(), name="deploy-reconciler")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick()
                self._failing = False
            except SOURCE_ERRORS as exc:
                if not self._failing:
                    log.warning("deployments unavailable (%s); retrying", exc)
                self._failing = True
            except Exception:
                log.exception("deployment reconcile step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)

    # ----- one pass

    async def tick(self, *, apply: bool = True) -> None:
        desired, splits = await self.source.load()
        self.desired = {d.model_id: d for d in desired}
        if splits != self._splits_read:  # changed in the database since the last pass
            self.splits.replace(splits)
            self._splits_read = splits
        for base in self._bases(desired):
            await self._reconcile(base, desired, apply=apply)
        self.ticks += 1

    def _bases(self, desired: list[Desired]) -> list[str]:
        bases = {d.base for d in desired} | {d.base for d in deploy.load(self.settings)}
        bases |= self._attached.keys()
        for entry in self.manager.registry.all_models():
            ref = deploy.parse_model_id(entry.id) if entry.adapter is not None else None
            if ref is not None:
                bases.add(ref.base)
        return sorted(bases)

    async def _reconcile(self, base: str, desired: list[Desired], *, apply: bool) -> None:
        role = role_of(self.manager, base)
        if role == "follow":
            return  # the leader's published state carries the entries (mirror.py)
        engine = engine_of(self.manager, base)
        if role == "absent" or engine is None:
            if role == "absent" and apply and self.manager.has_engines():
                self._forget(base, desired)
            self._register(base, engine or "llamacpp", [], desired)
            return
        if role == "attached":
            applied = await self._attached_apply(base, engine, desired, apply=apply)
        else:
            if apply and role == "apply":
                await self._apply(base, engine, plan(base, desired, deploy.load(self.settings)))
            applied = deploy.for_base(deploy.load(self.settings), base)
        self._register(base, engine, applied, desired)

    def _register(
        self, base: str, engine: Engine, applied: list[Deployment], desired: list[Desired]
    ) -> None:
        served = {d.model_id for d in desired if d.base == base}
        routes = deploy.routes(engine, applied, served)
        own = deploy.base_route(engine, applied)
        if deploy.sync_entries(self.manager.registry, base, routes, own):
            if self.manager.fleet is not None:
                self.manager.fleet.changed()  # the leader publishes them to its followers

    # ----- applying (this process runs the engine)

    async def _apply(self, base: str, engine: Engine, todo: BasePlan) -> None:
        if not todo.changes:
            return
        resolved = await self._resolved(todo.add)
        others = [d for d in deploy.load(self.settings) if d.base != base]
        if engine == "vllm":
            kept = await self._vllm(base, todo, resolved)
            deploy.save(self.settings, [*others, *kept])
            return
        if not todo.drop and not resolved:
            return
        deploy.save(self.settings, [*others, *todo.keep, *(d for _, d in resolved)])
        if await self._restarts.restart(base):
            return
        deploy.save(self.settings, [*others, *todo.keep])  # without what it failed with
        if not await self._restarts.restart(base):
            log.error("the engine of %s did not restart with its previous adapters", base)
        reason = f"the engine of '{base}' did not start with the adapter (see the log)"
        for want, _ in resolved:  # reported once the engine is back: the caller may use it
            await self._fail(want, reason)

    async def _resolved(self, wants: list[Desired]) -> list[tuple[Desired, Deployment]]:
        found: list[tuple[Desired, Deployment]] = []
        for want in wants:
            try:
                found.append((want, await self._resolve(want)))
            except APIError as exc:
                await self._fail(want, exc.message)
        return found

    async def _vllm(
        self, base: str, todo: BasePlan, resolved: list[tuple[Desired, Deployment]]
    ) -> list[Deployment]:
        entry = self.manager.registry.get(base)
        endpoints = list(entry.endpoints) if entry is not None else []
        for gone in todo.drop:
            await unload_vllm(endpoints, gone.model_id)
        kept = list(todo.keep)
        for want, deployment in resolved:
            try:
                await load_vllm(endpoints, deployment)
            except APIError as exc:
                await self._fail(want, exc.message)
            else:
                kept.append(deployment)
        return kept

    async def _attached_apply(
        self, base: str, engine: Engine, desired: list[Desired], *, apply: bool
    ) -> list[Deployment]:
        """An engine chatgate does not run: vLLM loads at runtime (each gateway asks; it is
        idempotent); llama.cpp serves the applied list it was started with."""
        if engine == "llamacpp":
            applied = deploy.for_base(deploy.load(self.settings), base)
            for want in plan(base, desired, applied).add if apply else []:
                reason = f"the engine of '{base}' is not run by chatgate: it cannot load adapters"
                await self._fail(want, reason)
            return applied
        loaded = self._attached.get(base, [])
        todo = plan(base, desired, loaded)
        if apply and todo.changes:
            loaded = await self._vllm(base, todo, await self._resolved(todo.add))
            self._attached[base] = loaded
        return loaded

    def _forget(self, base: str, desired: list[Desired]) -> None:
        """The base is not running here (switched away): undeployed versions leave the
        applied list now, so its next start loads only what is wanted."""
        wanted = {d.model_id for d in desired}
        applied = deploy.load(self.settings)
        kept = [d for d in applied if d.base != base or d.model_id in wanted]
        if kept != applied:
            deploy.save(self.settings, kept)

    async def _fail(self, want: Desired, reason: str) -> None:
        log.warning("%s could not be deployed: %s", want.model_id, reason)
        self.desired[want.model_id] = replace(want, error=reason)
        try:
            await self.source.fail(want.model_id, want.request_id, reason)
        except SOURCE_ERRORS as exc:
            log.warning("could not record the failure of %s: %s", want.model_id, exc)
        if self._notify is not None:
            self._notify()

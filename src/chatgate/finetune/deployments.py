"""What the admin API does for deploy, undeploy, rollback and splits, on any gateway.

Each writes the desired state (``desired.py``), tells the fleet (event ``deployments``)
and this gateway's reconciler, then waits until *this* gateway serves the result (or the
failure recorded on the row, or a generous bound): the fleet's other gateways converge the
same way within a reconcile tick of their host's leader finishing (``reconcile.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.engines.runtime.manager import EngineManager
from chatgate.errors import APIError
from chatgate.finetune import desired, split
from chatgate.finetune.deploy import Deployment, VersionRef, parse_spec
from chatgate.finetune.desired import Desired
from chatgate.finetune.reconcile import EVENT_KIND, Reconciler
from chatgate.finetune.rollout import REGISTRY_TIMEOUT_S, registry_call
from chatgate.finetune.split import Split
from chatgate.fleet import FleetEvents
from chatgate.settings import Settings

WAIT_POLL_S = 0.25
NO_PREVIOUS = "no version before"  # tools/train/registry.py's rollback, when none is left
T = TypeVar("T")


@dataclass(frozen=True)
class RolledBack:
    """What answers NAME's requests after a rollback: a version, or (``to_base``) the base
    model alone, with the versions that were undeployed for it."""

    model_id: str
    base: str
    name: str
    version: int | None = None
    deployment: Deployment | None = None
    undeployed: list[str] = field(default_factory=list)


class Deployer:
    def __init__(
        self,
        settings: Settings,
        manager: EngineManager,
        sessionmaker: Callable[[], AsyncSession],
        reconciler: Reconciler,
        events: FleetEvents | None,
    ) -> None:
        self.settings = settings
        self.manager = manager
        self.splits = reconciler.splits
        self._sessionmaker = sessionmaker
        self.reconciler = reconciler
        self._events = events

    def wait_seconds(self) -> float:
        """A download, a drain, and a restart that may have to be restored once."""
        settings = self.settings
        return (
            REGISTRY_TIMEOUT_S + settings.switch_drain_seconds + 2 * settings.switch_ready_seconds
        )

    def bases(self) -> list[str]:
        return list(self.manager.profiles)

    def serves(self, model_id: str) -> bool:
        """Whether this gateway routes requests for ``model_id`` now."""
        entry = self.manager.registry.get(model_id)
        return entry is not None and bool(entry.endpoints) and not entry.draining

    # ----- deploy

    async def deploy(self, spec: str, user_id: int | None) -> Deployment:
        """Fetch ``spec``'s version (a number or an alias), ask the fleet to serve it, and
        return once this gateway does."""
        ref = parse_spec(spec, self.bases())
        if ref.base not in self.manager.profiles or self.manager.registry.get(ref.base) is None:
            raise APIError(
                409, f"the base model '{ref.base}' is not served here", "base_not_served"
            )
        found = await registry_call(self.settings, "resolve", ref.registered, ref.ref)
        version = int(found["version"])
        async with self._sessionmaker() as session:
            want = await desired.put(session, ref, version, user_id)
        self._changed()
        await self._until_served(want)
        return Deployment(
            model_id=want.model_id,
            base=ref.base,
            name=ref.name,
            version=version,
            gguf=str(found["gguf"]),
            adapter_dir=found.get("adapter_dir"),
        )

    async def _until_served(self, want: Desired) -> None:
        def outcome() -> str | None:
            if self.serves(want.model_id):
                return ""
            seen = self.reconciler.desired.get(want.model_id)
            if seen is not None and seen.request_id == want.request_id and seen.error:
                return seen.error
            return None

        error = await self._until(outcome)
        if error is None:
            raise APIError(
                504, f"{want.model_id} is not served yet; it may still be", "deploy_timeout"
            )
        if error:
            raise APIError(502, f"{want.model_id}: {error}", "deploy_failed")

    # ----- undeploy

    async def undeploy(self, model_ids: list[str]) -> None:
        """Remove the rows (and splits to them); return once this gateway serves none."""
        async with self._sessionmaker() as session:
            await desired.remove(session, model_ids)
        self._changed()

        def gone() -> bool | None:
            return True if not any(self.manager.registry.get(m) for m in model_ids) else None

        if await self._until(gone) is None:
            raise APIError(
                504, "the version is still served here; it may stop soon", "deploy_timeout"
            )

    async def undeploy_one(self, model_id: str) -> None:
        if model_id not in {d.model_id for d in await self.listed()}:
            raise APIError(404, f"'{model_id}' is not deployed", "not_deployed")
        await self.undeploy([model_id])

    async def listed(self) -> list[Desired]:
        async with self._sessionmaker() as session:
            return await desired.rows(session)

    # ----- rollback

    async def rollback(self, name: str, *, to_base: bool, user_id: int | None) -> RolledBack:
        """``champion`` back to the previous version, deployed; ``to_base``: every
        deployed version of NAME undeployed, so its base model answers alone."""
        ref = parse_spec(name if "@" in name else f"{name}@champion", self.bases())
        if to_base:
            mine = [d.model_id for d in await self.listed() if _same(d, ref)]
            await self.undeploy(mine)
            return RolledBack(ref.base, ref.base, ref.name, undeployed=mine)
        try:
            moved = await registry_call(self.settings, "rollback", ref.registered)
        except APIError as exc:
            if exc.status_code == 404 and NO_PREVIOUS in exc.message:
                raise APIError(
                    409,
                    f"{exc.message}: to answer with the base model alone, roll back with"
                    f' {{"to_base": true}} (chatgate models rollback {ref.base}:{ref.name}'
                    " --to-base)",
                    "no_previous_version",
                ) from exc
            raise
        deployed = await self.deploy(ref.model_id(int(moved["version"])), user_id)
        return RolledBack(
            deployed.model_id, ref.base, ref.name, deployed.version, deployed
        )  # fmt: skip

    # ----- splits

    async def set_split(self, chosen: Split) -> dict[str, Split]:
        split.validated(self.manager.registry, chosen.base, chosen.to, chosen.percent)
        async with self._sessionmaker() as session:
            await desired.set_split(session, chosen)
            found = await desired.splits(session)
        self.splits.replace(found)  # this gateway at once; the others on their next tick
        self._changed()
        return found

    async def current_splits(self) -> dict[str, Split]:
        async with self._sessionmaker() as session:
            return await desired.splits(session)

    # ----- helpers

    def _changed(self) -> None:
        if self._events is not None:
            self._events.publish(EVENT_KIND)
        self.reconciler.wake()

    async def _until(self, check: Callable[[], T | None]) -> T | None:
        deadline = time.monotonic() + self.wait_seconds()
        while (result := check()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(WAIT_POLL_S, left))
        return result


def _same(row: Desired, ref: VersionRef) -> bool:
    return row.base == ref.base and row.name == ref.name

"""Many gateway processes, one local engine: the leader runs it, the others follow.

Every process of a fleet (``--workers N``, replicas sharing Redis, serves sharing a data
dir) runs one coordinator. The one holding the leader lease (``leader.py``) supervises
the engine through its ``EngineManager``, performs every switch, and publishes its
managed registry entries and the switch's progress as the fleet state
(``fleet_store.py``). The others copy that state into their registries (``mirror.py``):
they route to the leader's engine, answer 503 ``model_switching`` while it drains, and
report their own in-flight requests so the leader stops the old engine only once the
whole fleet drained.

Timing: the state is read every ``TICK_SECONDS`` (0.5 s) and at once when another process
pokes the fleet channel (``<prefix>:fleet``, kind ``engine``), so followers see a switch
within a poll (milliseconds with Redis). A leader that dies mid-switch (its lease expires,
or its file lock goes with it) is replaced by the next process to take the lease, which
*finishes* the switch it finds in the slot: it starts the target and, if that fails,
restores the previous model, as the dead leader would have. A leader that dies while no
switch runs is replaced the same way (it restarts the active profile, falling back to the
embedded one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from chatgate.engines.runtime import mirror
from chatgate.engines.runtime.fleet_store import Doc, FleetStore, store_for
from chatgate.engines.runtime.leader import LeaderLease, lease_for
from chatgate.engines.runtime.manager import EngineManager
from chatgate.engines.runtime.switch import SwitchStatus
from chatgate.errors import APIError
from chatgate.fleet import FleetEvents
from chatgate.settings import DEFAULT_MODEL_ID, Settings

log = logging.getLogger("chatgate.engines")

TICK_SECONDS = 0.5
REFRESH_SECONDS = 30.0  # the leader rewrites an unchanged state this often (its TTL)
REPORT_STALE_SECONDS = 3.0  # a follower that stopped reporting is gone: not waited for
STORE_ERRORS = (RedisError, OSError, TimeoutError, ValueError, KeyError)
EVENT_KIND = "engine"


class DrainReports:
    """The other gateways' in-flight counts for a drain, ignoring reporters that went quiet
    (a dead follower must not hold the drain for its whole time)."""

    def __init__(self, me: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._me = me
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}  # -> (seq, first seen)

    def total(self, switch_id: str, reports: dict[str, tuple[int, int]]) -> int:
        now = self._clock()
        total = 0
        for stale in [key for key in self._seen if key[0] != switch_id]:
            del self._seen[stale]  # one drain at a time: forget the previous one's
        for replica, (count, seq) in reports.items():
            if replica == self._me:
                continue
            key = (switch_id, replica)
            last = self._seen.get(key)
            if last is None or last[0] != seq:
                self._seen[key] = (seq, now)
            elif now - last[1] >= REPORT_STALE_SECONDS:
                continue
            total += count
        return total


class EngineCoordinator:
    def __init__(
        self,
        manager: EngineManager,
        store: FleetStore,
        lease: LeaderLease,
        settings: Settings,
        events: FleetEvents | None = None,
    ) -> None:
        self.manager = manager
        self.replica = uuid.uuid4().hex[:12]
        self._store = store
        self.lease = lease
        self._settings = settings
        self._events = events
        self._reports = DrainReports(self.replica)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.leading = False
        self._took_over = False
        self._published: Doc | None = None
        self._published_at = 0.0
        self._seq = 0
        self._failing = False

    # ----- lifecycle

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.manager.fleet = self
        self.lease.add_listener(self._lease_changed)
        self.lease.start()
        if self._events is not None:
            self._events.on(EVENT_KIND, lambda _event: self.wake())
        self._task = asyncio.create_task(self._run(), name="engine-coordinator")

    async def close(self) -> None:
        """Stop following; a leader hands over: 503 model_switching on the followers until
        the next leader runs the engine, engines stopped before the lease is given back."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.lease.remove_listener(self._lease_changed)
        if self.leading:
            for model_id in self.manager.owned:
                entry = self.manager.registry.get(model_id)
                if entry is not None:
                    entry.draining = True
            with contextlib.suppress(*STORE_ERRORS):
                await self._publish(force=True)
        await self.manager.release_engines()
        await asyncio.to_thread(self.lease.stop, release=True)
        self._poke()

    def wake(self) -> None:
        self._wake.set()

    def _lease_changed(self, _held: bool) -> None:  # the lease keeper's thread
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.wake)

    # ----- SwitchFleet (the manager's side)

    async def claim(self, status: SwitchStatus) -> bool:
        try:
            taken = await self._store.claim(status.public())
        except STORE_ERRORS as exc:
            raise APIError(
                503, f"The fleet's shared state is unreachable: {exc}", "fleet_unavailable"
            ) from exc
        if taken:
            self._poke()
            self.wake()
        return taken

    async def outstanding(self, switch_id: str) -> int:
        try:
            reports = await self._store.reports(switch_id)
        except STORE_ERRORS as exc:
            log.warning("drain reports unavailable (%s): not waiting for other gateways", exc)
            return 0
        return self._reports.total(switch_id, reports)

    def changed(self) -> None:
        self.wake()

    # ----- the loop

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self._tick()
                self._failing = False
            except STORE_ERRORS as exc:
                if not self._failing:
                    log.warning("fleet engine state unavailable (%s); retrying", exc)
                self._failing = True
            except Exception:
                log.exception("engine coordinator step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_SECONDS)

    async def _tick(self) -> None:
        state, request = await self._store.load()
        if self.lease.held:
            await self._lead(state, request)
            return
        if self.leading:
            await self._step_down()
        mirror.apply(self.manager, self._settings, state, request)
        await self._report()

    async def _lead(self, state: Doc | None, request: Doc | None) -> None:
        if not self.leading:
            self.leading = True
            log.info("this gateway (%s) now runs the fleet's local engines", self.replica)
        manager = self.manager
        if not manager.running():
            if request is not None:
                if self._finished(state, request):
                    await self._publish(force=True)
                    await self._store.release(str(request["id"]))
                    self._poke()
                else:
                    self._run_request(state, request)
            elif state and state.get("active") and self._may_take_over():
                mirror.apply(manager, self._settings, state, None)  # 503 until it runs
                await self._take_over(str(state["active"]))
        await self._publish()

    def _finished(self, state: Doc | None, request: Doc) -> bool:
        """The switch in the slot ended (here, or published so by a leader that then died)."""
        published = (state or {}).get("switch") or {}
        if published.get("id") == request["id"] and published.get("finished_at"):
            return True
        current = self.manager.switch
        return current is not None and current.id == request["id"] and current.finished

    def _may_take_over(self) -> bool:
        """Restart the fleet's engine here only where the local engine is wanted (not with
        --no-embedded), and only once per leadership (a failure is for an admin to fix)."""
        return (
            self._settings.embedded_engine
            and not self._took_over
            and not self.manager.has_engines()
        )

    def _run_request(self, state: Doc | None, request: Doc) -> None:
        published = (state or {}).get("switch") or {}
        mine = self.manager.switch
        if published.get("id") == request["id"] and (state or {}).get("leader") != self.replica:
            status = SwitchStatus.from_public(published)  # a leader ran it, then went away
            status.note(f"gateway {self.replica} took over the switch (its leader is gone)")
        elif mine is not None and mine.id == request["id"] and not mine.finished:
            status = mine  # asked of this gateway
        else:
            status = SwitchStatus.from_public(request)  # asked of another, not begun
        self.manager.run(status)

    async def _take_over(self, active: str) -> None:
        """No engine runs for the fleet's active profile (its leader died, or the fleet is
        starting): start it, as a switch, with the embedded engine as the fallback."""
        self._took_over = True
        embedded = self._settings.embedded_engine and DEFAULT_MODEL_ID in self.manager.profiles
        fallback = DEFAULT_MODEL_ID if embedded and active != DEFAULT_MODEL_ID else None
        status = SwitchStatus(active, fallback, 0.0)
        status.note(f"gateway {self.replica} runs the engines now: starting {active}")
        if await self._store.claim(status.public()):
            self.manager.run(status)

    async def _step_down(self) -> None:
        log.warning("gateway %s lost the engine lease: stopping its engines", self.replica)
        self.leading = False
        self._took_over = False
        self._published = None
        await self.manager.release_engines()

    async def _publish(self, *, force: bool = False) -> None:
        doc = mirror.snapshot(self.manager, self.replica)
        now = time.monotonic()
        if not force and doc == self._published and now - self._published_at < REFRESH_SECONDS:
            return
        if await self._store.write_state(doc):
            changed = doc != self._published
            self._published, self._published_at = doc, now
            if changed:
                self._poke()

    async def _report(self) -> None:
        """This follower's in-flight requests on what the leader drains: a switch's previous
        model, or the draining entries of a restart (``manager.drain_id``)."""
        status = self.manager.switch
        registry = self.manager.registry
        if status is not None and not status.finished and status.phase == "draining":
            entry = registry.get(status.previous) if status.previous else None
            drain_id, count = status.id, entry.outstanding() if entry is not None else 0
        elif self.manager.drain_id is not None:
            drain_id = self.manager.drain_id
            count = sum(e.outstanding() for e in registry.all_models() if e.draining)
        else:
            return
        self._seq += 1
        await self._store.report(drain_id, self.replica, count, self._seq)

    def _poke(self, **data: Any) -> None:
        if self._events is not None:
            self._events.publish(EVENT_KIND, **data)


def start_coordinator(
    settings: Settings,
    manager: EngineManager,
    redis: Redis | None,
    events: FleetEvents | None,
    lease: LeaderLease | None,
) -> EngineCoordinator:
    """This gateway's coordinator, running (the lease: the CLI's, else a new one)."""
    if lease is None:
        lease = lease_for(
            settings.redis_url,
            settings.redis_prefix,
            settings.run_dir,
            settings.engine_leader_lease_seconds,
        )
    store = store_for(redis, settings.redis_prefix, settings.run_dir, lease)
    coordinator = EngineCoordinator(manager, store, lease, settings, events)
    coordinator.start()
    return coordinator

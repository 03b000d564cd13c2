"""The reconciler's decisions (finetune/reconcile.py): desired versions against a host's
applied list → downloads, restarts, failures recorded, entries registered; a follower's
entries from its leader's published state (engines/runtime/mirror.py); the desired state in the
database (finetune/desired.py). Engines, the registry tool and the database source are
stand-ins here; test_deploy_fleet_e2e.py runs the real ones."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.engines.catalog.profiles import ModelProfile, load_profiles
from chatgate.engines.runtime import mirror
from chatgate.engines.runtime.manager import EngineManager
from chatgate.engines.runtime.supervisor import EngineSupervisor
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.registry import BASE_ONLY, AdapterRoute, ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.finetune import deploy, desired
from chatgate.finetune.deploy import Deployment, VersionRef
from chatgate.finetune.desired import Desired
from chatgate.finetune.reconcile import Reconciler, plan
from chatgate.finetune.rollout import EngineRestarts
from chatgate.finetune.split import Split, SplitTable
from chatgate.settings import Settings
from tests.finetune.deploy_fakes import FakeSource, wanted

BASE = "smollm2-135m"
V3 = f"{BASE}:zanthia@3"
V4 = f"{BASE}:zanthia@4"


def applied(model_id: str) -> Deployment:
    ref = deploy.parse_model_id(model_id)
    assert ref is not None
    return Deployment(model_id, ref.base, ref.name, int(ref.ref), f"/a/{model_id}.gguf")


def test_the_plan_adds_keeps_and_drops_per_base() -> None:
    failed = wanted(f"{BASE}:faq@1", error="did not load")
    rows = [wanted(V3), failed, wanted(V4)]
    todo = plan(BASE, rows, [applied(f"{BASE}:old@1"), applied(V3), applied("qwen:x@1")])
    assert [d.model_id for d in todo.keep] == [V3]
    assert [d.model_id for d in todo.add] == [V4]  # the failed one waits for a new deploy
    assert [d.model_id for d in todo.drop] == [f"{BASE}:old@1"]  # another base untouched
    assert not plan(BASE, [wanted(V3)], [applied(V3)]).changes


class HostManager(EngineManager):
    """Runs the engines of ``here`` (the reconciler only asks whether it does)."""

    def __init__(
        self, settings: Settings, registry: ModelRegistry, profiles: dict[str, ModelProfile]
    ) -> None:
        super().__init__(settings, registry, profiles)
        self.here: set[str] = set()

    def supervisor(self, profile_id: str) -> EngineSupervisor | None:
        return cast(EngineSupervisor, object()) if profile_id in self.here else None


class FakeRestarts(EngineRestarts):
    """Records the applied list each restart starts with; ``results`` say how it went."""

    def __init__(self, settings: Settings, manager: EngineManager, results: list[bool]) -> None:
        super().__init__(settings, manager)
        self.results = results
        self.lists: list[list[str]] = []

    async def restart(self, base: str) -> bool:
        self.lists.append([d.model_id for d in deploy.load(self.settings)])
        return self.results.pop(0) if self.results else True


async def fake_resolve(want: Desired) -> Deployment:
    if want.version == 9:
        raise APIError(404, f"no version '9' of '{want.registered}'", "model_version_not_found")
    return applied(want.model_id)


def base_entry(port: int = 9000) -> ModelEntry:
    endpoint = Endpoint(
        name=f"e{port}", base_url=f"http://127.0.0.1:{port}/v1", upstream_model=BASE
    )
    return ModelEntry(id=BASE, name="SmolLM2", endpoints=[endpoint], profile_id=BASE)


def host(
    tmp_path: Path, source: FakeSource, results: list[bool] | None = None
) -> tuple[Reconciler, HostManager, FakeRestarts]:
    settings = Settings(data_dir=tmp_path)
    registry = ModelRegistry(BASE)
    registry.add(base_entry())
    manager = HostManager(settings, registry, load_profiles(settings.profiles_dir))
    manager.owned.add(BASE)
    manager.here.add(BASE)
    restarts = FakeRestarts(settings, manager, results or [])
    reconciler = Reconciler(
        settings, manager, source, SplitTable(), resolver=fake_resolve, restarts=restarts
    )
    return reconciler, manager, restarts


async def test_a_deploy_restarts_the_engine_with_the_adapter_and_registers_it(
    tmp_path: Path,
) -> None:
    source = FakeSource(wanted(V3))
    reconciler, manager, restarts = host(tmp_path, source)
    await reconciler.tick()
    assert restarts.lists == [[V3]]
    assert [d.model_id for d in deploy.load(reconciler.settings)] == [V3]
    entry = manager.registry.get(V3)
    assert entry is not None and entry.adapter == AdapterRoute("llamacpp", 0, V3)
    assert entry.endpoints is manager.registry.lookup(BASE).endpoints
    assert manager.registry.lookup(BASE).adapter == AdapterRoute("llamacpp", BASE_ONLY)
    await reconciler.tick()
    assert len(restarts.lists) == 1  # applied: nothing more to do

    source.rows = []  # undeployed: restarted without it, no longer routed
    await reconciler.tick()
    assert restarts.lists[1:] == [[]]
    assert manager.registry.get(V3) is None and manager.registry.lookup(BASE).adapter is None


async def test_a_version_the_engine_cannot_start_with_is_dropped_and_reported(
    tmp_path: Path,
) -> None:
    first = wanted(V3)
    source = FakeSource(first)
    reconciler, manager, restarts = host(tmp_path, source, results=[False, True])
    await reconciler.tick()
    assert restarts.lists == [[V3], []]  # tried, then restored without it
    assert deploy.load(reconciler.settings) == []
    ((model_id, request_id, error),) = source.failures
    assert (model_id, request_id) == (V3, first.request_id)
    assert "did not start with the adapter" in error
    assert reconciler.desired[V3].error == error  # the waiting API call sees it at once
    assert manager.registry.get(V3) is None
    await reconciler.tick()
    assert len(restarts.lists) == 2  # not retried until deployed again

    source.rows = [wanted(V3)]  # a new deploy: a new attempt
    await reconciler.tick()
    assert restarts.lists[2:] == [[V3]] and manager.registry.get(V3) is not None


async def test_a_version_the_registry_cannot_resolve_is_reported_without_a_restart(
    tmp_path: Path,
) -> None:
    source = FakeSource(wanted(f"{BASE}:zanthia@9"))
    reconciler, _manager, restarts = host(tmp_path, source)
    await reconciler.tick()
    assert restarts.lists == []
    assert [f[2] for f in source.failures] == [f"no version '9' of '{BASE}-zanthia'"]


async def test_entries_come_back_after_a_switch_away_and_back(tmp_path: Path) -> None:
    source = FakeSource(wanted(V3), wanted(V4))
    reconciler, manager, restarts = host(tmp_path, source)
    await reconciler.tick()
    manager.registry.remove(BASE)  # switched to another model: its engine is gone
    manager.here.discard(BASE)
    await reconciler.tick()
    assert manager.registry.get(V3) is None and manager.registry.get(V4) is None
    assert [d.model_id for d in deploy.load(reconciler.settings)] == [V3, V4]  # for its start

    manager.registry.add(base_entry(port=9001))  # switched back: a new engine, new entry
    manager.here.add(BASE)
    await reconciler.tick()
    back = manager.registry.lookup(V4)
    assert back.endpoints is manager.registry.lookup(BASE).endpoints
    assert back.endpoints[0].base_url.endswith(":9001/v1") and back.adapter is not None
    assert back.adapter.lora_id == 1
    assert len(restarts.lists) == 1  # the switch started it with the list: no restart


async def test_a_follower_leaves_its_entries_to_the_leaders_state(tmp_path: Path) -> None:
    source = FakeSource(wanted(V3))
    source.splits = {BASE: Split(BASE, V3, 20)}
    reconciler, manager, restarts = host(tmp_path, source)
    manager.here.discard(BASE)  # the leader (another process) runs the engine
    await reconciler.tick()
    assert restarts.lists == [] and deploy.load(reconciler.settings) == []
    assert manager.registry.get(V3) is None
    assert reconciler.splits.current() == {BASE: Split(BASE, V3, 20)}  # refreshed anyway


def test_followers_mirror_the_versions_the_leader_serves(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    profiles = load_profiles(settings.profiles_dir)
    leader = EngineManager(settings, ModelRegistry(BASE), profiles)
    leader.registry.add(base_entry())
    leader.owned.add(BASE)
    mine = [applied(V3), applied(V4)]
    deploy.sync_entries(
        leader.registry, BASE, deploy.routes("llamacpp", mine, {V3, V4}),
        deploy.base_route("llamacpp", mine),
    )  # fmt: skip
    follower = EngineManager(settings, ModelRegistry(BASE), profiles)
    mirror.apply(follower, settings, mirror.snapshot(leader, "leader"), None)
    version = follower.registry.lookup(V4)
    assert version.adapter == AdapterRoute("llamacpp", 1, V4)
    assert version.engine_body({"model": BASE})["lora"] == [{"id": 1, "scale": 1.0}]
    assert version.endpoints is follower.registry.lookup(BASE).endpoints
    assert follower.registry.lookup(BASE).engine_body({})["lora"] == [{"id": 0, "scale": 0.0}]

    deploy.sync_entries(leader.registry, BASE, deploy.routes("llamacpp", mine, {V3}))
    leader.registry.lookup(V3).draining = True
    mirror.apply(follower, settings, mirror.snapshot(leader, "leader"), None)
    assert follower.registry.get(V4) is None and follower.registry.lookup(V3).draining

    gone = {**mirror.snapshot(leader, "leader"), "entries": []}  # the base switched away
    mirror.apply(follower, settings, gone, None)
    assert follower.registry.get(BASE) is None and follower.registry.get(V3) is None


async def test_the_desired_state_in_the_database(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            ref = VersionRef(BASE, "zanthia", "champion")
            first = await desired.put(session, ref, 3, None)
            other = await desired.put(session, VersionRef(BASE, "faq", "1"), 1, None)
            await desired.fail(session, V3, "not-this-attempt", "stale")
            await desired.fail(session, V3, first.request_id, "did not load")
            await desired.set_split(session, Split(BASE, V3, 30))
            rows = await desired.rows(session)
            assert [(r.model_id, r.error) for r in rows] == [
                (V3, "did not load"),
                (other.model_id, None),
            ]
            assert rows[0].registered == f"{BASE}-zanthia" and rows[0].version == 3
            again = await desired.put(session, ref, 3, None)  # a new attempt clears it
            assert again.error is None and again.request_id != first.request_id
            assert await desired.splits(session) == {BASE: Split(BASE, V3, 30)}
            await desired.remove(session, [V3])  # its split goes with it
            assert [r.model_id for r in await desired.rows(session)] == [other.model_id]
            assert await desired.splits(session) == {}
            await desired.set_split(session, Split(BASE, other.model_id, 10))
            await desired.set_split(session, Split(BASE, other.model_id, 0))
            assert await desired.splits(session) == {}
    finally:
        await engine.dispose()

"""EngineManager: switching between profiles with real supervised (fake) engine processes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from chatgate.engines.catalog.profiles import ModelProfile
from chatgate.engines.runtime.manager import EngineManager, entry_for_profile
from chatgate.engines.runtime.supervisor import EngineSupervisor
from chatgate.engines.upstream.registry import ModelRegistry
from chatgate.errors import APIError
from chatgate.settings import Settings

FAKE_ENGINE = Path(__file__).parent.parent / "fake_engine.py"


def profile(profile_id: str, **extra: Any) -> ModelProfile:
    fields: dict[str, Any] = {
        "id": profile_id,
        "name": profile_id.upper(),
        "engine": "vllm",
        "hf_id": f"org/{profile_id}",
        "params_b": 0.1,
        "num_layers": 2,
        "num_kv_heads": 1,
        "head_dim": 8,
        "context_length": 2048,
        "max_model_len": 2048,
        "aliases": [f"{profile_id}-alias"],
    }
    fields.update(extra)
    return ModelProfile(**fields)


EMBEDDER = profile("embedder", task="embed", embeddings={"dimensions": 8})
PROFILES = {p.id: p for p in (profile("alpha"), profile("beta"), profile("broken"), EMBEDDER)}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        jwt_secret="x" * 40,
        switch_drain_seconds=2.0,
        switch_ready_seconds=20.0,
    )


def fake_factory(tmp_path: Path) -> Callable[[ModelProfile, Settings], EngineSupervisor]:
    """Supervisors running tests/engines/fake_engine.py; profile 'broken' exits at once."""

    def build(p: ModelProfile, _settings: Settings) -> EngineSupervisor:
        options = ["--exit-code", "3"] if p.id == "broken" else []

        def command(port: int) -> list[str]:
            return [sys.executable, str(FAKE_ENGINE), "--port", str(port), *options]

        return EngineSupervisor(
            p.id,
            command,
            run_dir=tmp_path / "run",
            log_dir=tmp_path / "logs",
            backoff_initial=0.05,
            backoff_max=0.1,
            max_quick_failures=2,
        )

    return build


@pytest.fixture
async def manager(settings: Settings, tmp_path: Path) -> AsyncIterator[EngineManager]:
    registry = ModelRegistry("alpha")
    activated: list[str] = []

    async def on_active(profile_id: str) -> None:
        activated.append(profile_id)

    mgr = EngineManager(
        settings,
        registry,
        dict(PROFILES),
        supervisor_factory=fake_factory(tmp_path),
        on_active=on_active,
    )
    mgr.activated = activated  # type: ignore[attr-defined]
    first = fake_factory(tmp_path)(PROFILES["alpha"], settings)
    first.start()
    assert await asyncio.to_thread(first.wait_ready, 20.0)
    registry.add(entry_for_profile(PROFILES["alpha"], first.base_url, kind="attached"))
    mgr.adopt("alpha", first)
    try:
        yield mgr
    finally:
        await mgr.close()
        first.stop(2.0)


async def finished(mgr: EngineManager, timeout: float = 30.0) -> str:
    async with asyncio.timeout(timeout):
        while mgr.switch is None or not mgr.switch.finished:
            await asyncio.sleep(0.05)
    return mgr.switch.phase


def registry_of(mgr: EngineManager) -> ModelRegistry:
    return mgr._registry


async def test_adopt_marks_the_endpoint_managed(manager: EngineManager) -> None:
    entry = registry_of(manager).get("alpha")
    assert entry is not None and entry.endpoints[0].kind == "managed"
    assert manager.active_profile == "alpha"
    assert manager.supervisor("alpha") is not None


async def test_switch_stops_the_old_engine_and_serves_the_new_one(
    manager: EngineManager,
) -> None:
    old = manager.supervisor("alpha")
    status = manager.begin_switch("beta")
    assert status.previous == "alpha" and status.target == "beta"
    assert await finished(manager) == "ready"
    registry = registry_of(manager)
    assert registry.get("alpha") is None
    entry = registry.get("beta")
    assert entry is not None and entry.endpoints[0].kind == "managed"
    assert registry.resolve("beta-alias").id == "beta"
    assert registry.default_model == "beta" and registry.resolve(None).id == "beta"
    assert manager.active_profile == "beta"
    assert manager.activated == ["beta"]  # type: ignore[attr-defined]
    assert old is not None and old.status().state == "stopped"
    phases = [line for _, line in manager.switch.log] if manager.switch else []
    assert any("drained" in line for line in phases)
    assert any("stopped" in line for line in phases)


async def test_a_failed_start_restores_the_previous_model(manager: EngineManager) -> None:
    manager.begin_switch("broken")
    assert await finished(manager) == "rolled_back"
    registry = registry_of(manager)
    assert registry.get("broken") is None
    restored = registry.get("alpha")
    assert restored is not None and not restored.draining
    assert manager.active_profile == "alpha"
    assert manager.supervisor("broken") is None
    assert "did not become ready" in " ".join(line for _, line in manager.switch.log)  # type: ignore[union-attr]


async def test_draining_waits_for_in_flight_requests(manager: EngineManager) -> None:
    entry = registry_of(manager).get("alpha")
    assert entry is not None
    entry.endpoints[0].outstanding = 1
    manager.begin_switch("beta")
    await asyncio.sleep(0.5)
    assert manager.switch is not None and manager.switch.phase == "draining"
    with pytest.raises(APIError) as refused:
        registry_of(manager).resolve("alpha")
    assert refused.value.status_code == 503 and refused.value.code == "model_switching"
    entry.endpoints[0].outstanding = 0
    assert await finished(manager) == "ready"


async def test_drain_is_bounded(manager: EngineManager) -> None:
    entry = registry_of(manager).get("alpha")
    assert entry is not None
    entry.endpoints[0].outstanding = 1  # never finishes
    manager.begin_switch("beta")
    assert await finished(manager) == "ready"
    assert "cut off" in " ".join(line for _, line in manager.switch.log)  # type: ignore[union-attr]


async def test_one_switch_at_a_time_and_clear_refusals(manager: EngineManager) -> None:
    manager.begin_switch("beta")
    with pytest.raises(APIError) as busy:
        manager.begin_switch("alpha")
    assert busy.value.status_code == 409 and busy.value.code == "switch_in_progress"
    await finished(manager)
    with pytest.raises(APIError) as same:
        manager.begin_switch("beta")
    assert same.value.code == "already_active"
    with pytest.raises(APIError) as unknown:
        manager.begin_switch("nope")
    assert unknown.value.status_code == 404
    manager.set_enabled("alpha", False)
    with pytest.raises(APIError) as disabled:
        manager.begin_switch("alpha")
    assert disabled.value.code == "model_disabled"
    with pytest.raises(APIError) as embedder:
        manager.begin_switch("embedder")  # it could not answer a single chat
    assert embedder.value.code == "model_not_supported"


async def test_disabling_hides_a_registered_model(manager: EngineManager) -> None:
    manager.set_enabled("alpha", False)
    with pytest.raises(APIError):
        registry_of(manager).resolve("alpha")
    manager.set_enabled("alpha", True)
    assert registry_of(manager).resolve("alpha").id == "alpha"
    with pytest.raises(APIError) as unknown:
        manager.set_enabled("ghost", False)
    assert unknown.value.status_code == 404


async def test_openai_profiles_cannot_be_started(manager: EngineManager) -> None:
    manager.profiles["remote"] = profile("remote", engine="openai", url="http://x:1/v1")
    with pytest.raises(APIError) as refused:
        manager.begin_switch("remote")
    assert refused.value.code == "profile_not_launchable"

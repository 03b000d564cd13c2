"""Which engine `chatgate serve` starts: the profile switched to last, else the embedded one."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from chatgate.cli import engine_start
from chatgate.db import migrate
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.engines.catalog import persist
from chatgate.engines.catalog.profiles import ModelProfile, load_profiles
from chatgate.engines.runtime.leader import FileLeaseBackend
from chatgate.settings import DEFAULT_MODEL_ID, Settings


def settings_with_active(tmp_path: Path, active: str | None, **extra: Any) -> Settings:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}"

    async def prepare() -> None:
        await migrate.upgrade_async(url)
        if active is None:
            return
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            await persist.save_active(session, active)
        await engine.dispose()

    asyncio.run(prepare())
    return Settings(data_dir=tmp_path, database_url=url, jwt_secret="x" * 40, **extra)


def ids(profiles: list[ModelProfile]) -> list[str]:
    return [p.id for p in profiles]


def test_the_embedded_engine_by_default(tmp_path: Path) -> None:
    settings = settings_with_active(tmp_path, None)
    assert ids(engine_start.startup_profiles(settings)) == [DEFAULT_MODEL_ID]


def test_the_profile_switched_to_comes_first(tmp_path: Path) -> None:
    settings = settings_with_active(tmp_path, "qwen2.5-7b-instruct")
    assert ids(engine_start.startup_profiles(settings)) == ["qwen2.5-7b-instruct", DEFAULT_MODEL_ID]
    several = settings.model_copy(update={"workers": 2})  # the leader worker restores it too
    assert ids(engine_start.startup_profiles(several)) == ["qwen2.5-7b-instruct", DEFAULT_MODEL_ID]


def test_workers_find_the_engine_to_start_in_the_fleet_state(tmp_path: Path) -> None:
    settings = settings_with_active(tmp_path, "qwen2.5-7b-instruct", workers=2)
    assert "the first worker" in engine_start.seed_fleet(settings)
    state = json.loads((settings.run_dir / "fleet" / "state.json").read_text())
    assert state["active"] == "qwen2.5-7b-instruct" and state["entries"][0]["draining"]
    leader = FileLeaseBackend(settings.run_dir / "fleet" / "leader.lock")
    try:
        assert leader.acquire("a running leader", 1)
        (settings.run_dir / "fleet" / "state.json").unlink()
        assert "follow" in engine_start.seed_fleet(settings)
        assert not (settings.run_dir / "fleet" / "state.json").exists(), "a leader runs it"
    finally:
        leader.close()


def test_a_profile_that_is_gone_is_ignored(tmp_path: Path) -> None:
    settings = settings_with_active(tmp_path, "deleted-profile")
    assert ids(engine_start.startup_profiles(settings)) == [DEFAULT_MODEL_ID]


def test_falls_back_to_the_embedded_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    profiles = load_profiles()
    wanted = [profiles["qwen2.5-7b-instruct"], profiles[DEFAULT_MODEL_ID]]
    monkeypatch.setattr(engine_start, "startup_profiles", lambda _settings: wanted)

    def start_ready(profile: ModelProfile, _settings: Settings, _say: Any, **_: Any) -> Any:
        if profile.engine == "vllm":
            raise engine_start.EngineStartError("engine qwen2.5-7b-instruct unavailable: no GPU")
        return SimpleNamespace(base_url="http://127.0.0.1:9999/v1")

    monkeypatch.setattr(engine_start, "_start_ready", start_ready)
    said: list[str] = []
    profile_id, _supervisor, spec = engine_start.start_engine(Settings(), said.append)
    assert profile_id == DEFAULT_MODEL_ID
    assert spec == f"{DEFAULT_MODEL_ID}=http://127.0.0.1:9999"
    assert said == [
        "engine qwen2.5-7b-instruct unavailable: no GPU; starting the embedded engine instead"
    ]


def test_the_embedded_engine_failing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        engine_start, "startup_profiles", lambda _s: [load_profiles()[DEFAULT_MODEL_ID]]
    )

    def fail(*_args: Any, **_kwargs: Any) -> Any:
        raise engine_start.EngineStartError("engine smollm2-135m did not become ready")

    monkeypatch.setattr(engine_start, "_start_ready", fail)
    with pytest.raises(engine_start.EngineStartError, match="did not become ready"):
        engine_start.start_engine(Settings(), print)


def test_a_crash_looping_embedded_engine_is_kept_so_the_gateway_can_say_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The last resort keeps a failed engine: `serve` comes up and answers engine_failed."""
    monkeypatch.setattr(
        engine_start, "startup_profiles", lambda _s: [load_profiles()[DEFAULT_MODEL_ID]]
    )
    stopped: list[bool] = []

    class Failed:
        base_url = "http://127.0.0.1:9999/v1"

        def start(self) -> None:
            pass

        def wait_ready(self, *_args: Any, **_kwargs: Any) -> bool:
            return False

        def status(self) -> Any:
            reason = "The engine smollm2-135m crashed 3 times within 300 s (last: SIGSEGV)."
            return SimpleNamespace(state="failed", last_error=reason + "\nLast log lines:\n…")

        def stop(self) -> None:
            stopped.append(True)

    monkeypatch.setattr(engine_start, "supervisor_for", lambda _p, _s: Failed())
    said: list[str] = []
    profile_id, supervisor, _spec = engine_start.start_engine(
        Settings(data_dir=tmp_path), said.append
    )
    assert profile_id == DEFAULT_MODEL_ID and isinstance(supervisor, Failed)
    assert stopped == []
    assert any(line.startswith("ENGINE FAILED: The engine smollm2-135m crashed") for line in said)
    assert not any("Last log lines" in line for line in said)

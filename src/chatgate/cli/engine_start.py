"""The engine ``chatgate serve`` starts: the active profile (after a switch), else the
embedded SmolLM2 on llama.cpp. One process of a fleet runs it (``engines/runtime/leader.py``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import FastAPI
from redis.asyncio import Redis

from chatgate.app import create_app
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.engines.catalog import persist
from chatgate.engines.catalog.profiles import ModelProfile, ProfileError, load_profiles
from chatgate.engines.runtime.fleet_store import store_for
from chatgate.engines.runtime.launch import LaunchError, supervisor_for
from chatgate.engines.runtime.leader import LeaderLease, lease_for
from chatgate.engines.runtime.supervisor import EngineSupervisor
from chatgate.observability.logging import configure_from_settings
from chatgate.settings import DEFAULT_MODEL_ID, Settings

log = logging.getLogger("chatgate")


class EngineStartError(RuntimeError):
    """The engine could not be started; the message says why and where to look."""


async def _stored_active(settings: Settings) -> str | None:
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return (await persist.load(session)).active
    finally:
        await engine.dispose()


def startup_profiles(settings: Settings) -> list[ModelProfile]:
    """What to try, in order: the profile switched to last time (if any), then the embedded
    one, so a switched-to engine that cannot start here does not keep chatgate down."""
    profiles = load_profiles(settings.profiles_dir)
    active = asyncio.run(_stored_active(settings))
    ordered = [profiles[DEFAULT_MODEL_ID]]
    if active and active != DEFAULT_MODEL_ID and active in profiles:
        ordered.insert(0, profiles[active])
    return ordered


def seed_fleet(settings: Settings) -> str:
    """``--workers N``: the engine runs in whichever worker takes the leader lease. Unless
    a leader already runs (another serve of this fleet), name the engine it is to start in
    the fleet state (the profile switched to last; the embedded one if that fails)."""
    try:
        first = startup_profiles(settings)[0]
    except ProfileError as exc:
        raise EngineStartError(f"engine unavailable: {exc}") from exc
    lease = lease_for(
        settings.redis_url, settings.redis_prefix, settings.run_dir,
        settings.engine_leader_lease_seconds,
    )  # fmt: skip
    if not lease.tick():
        lease.stop(release=False)
        return "another chatgate process runs the local engine: the workers follow it"
    try:
        asyncio.run(_write_seed(settings, lease, first.id))
    finally:
        lease.stop()
    return f"engine {first.id}: the first worker to take the leader lease starts it"


async def _write_seed(settings: Settings, lease: LeaderLease, profile_id: str) -> None:
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        store = store_for(redis, settings.redis_prefix, settings.run_dir, lease)
        placeholder = {"id": profile_id, "base_url": None, "draining": True, "failure": None}
        await store.write_state(
            {"leader": None, "active": profile_id, "default_model": None,
             "entries": [placeholder], "switch": None}
        )  # fmt: skip
    finally:
        if redis is not None:
            await redis.aclose()


def start_engine(
    settings: Settings, say: Callable[[str], None]
) -> tuple[str, EngineSupervisor, str]:
    """Start and wait for the startup engine: (profile id, supervisor, ``NAME=URL`` spec)."""
    try:
        candidates = startup_profiles(settings)
    except ProfileError as exc:
        raise EngineStartError(f"engine unavailable: {exc}") from exc
    *preferred, embedded = candidates
    for profile in preferred:
        try:
            return _started(profile, settings, say)
        except EngineStartError as exc:
            say(f"{exc}; starting the embedded engine instead")
    return _started(embedded, settings, say, last_resort=True)


def _started(
    profile: ModelProfile,
    settings: Settings,
    say: Callable[[str], None],
    *,
    last_resort: bool = False,
) -> tuple[str, EngineSupervisor, str]:
    supervisor = _start_ready(profile, settings, say, keep_failed=last_resort)
    return profile.id, supervisor, f"{profile.id}={supervisor.base_url.removesuffix('/v1')}"


def _start_ready(
    profile: ModelProfile,
    settings: Settings,
    say: Callable[[str], None],
    *,
    keep_failed: bool = False,
) -> EngineSupervisor:
    """Start the engine and wait until it generated a token. ``keep_failed``: an engine
    that crash-looped is kept (failed) so the gateway still comes up and tells users and
    admins why, instead of exiting; admins can then switch to another model."""
    try:
        supervisor = supervisor_for(profile, settings)
    except (ProfileError, LaunchError, RuntimeError) as exc:
        raise EngineStartError(f"engine {profile.id} unavailable: {exc}") from exc
    supervisor.start()
    say(f"starting engine {profile.id} ({profile.engine}) on {supervisor.base_url}")
    if not supervisor.wait_ready(settings.switch_ready_seconds, progress=say):
        status = supervisor.status()
        log_file = settings.log_dir / f"engine-{profile.id}.log"
        if keep_failed and status.state == "failed":
            say(f"ENGINE FAILED: {(status.last_error or '').split(chr(10), 1)[0]}")
            say(f"serving anyway: chats answer engine_failed until this is fixed; see {log_file}"
                " and `chatgate doctor`")  # fmt: skip
            return supervisor
        supervisor.stop()
        raise EngineStartError(
            f"engine {profile.id} did not become ready: {status.last_error or status.state};"
            f" see {log_file}"
        )
    say(f"engine {profile.id} ready (a 1-token generation worked)")
    return supervisor


def worker_app() -> FastAPI:
    """The app of each ``--workers`` process (uvicorn factory; this module imports little):
    it runs the engine if it takes the leader lease, and follows the one that did if not."""
    settings = Settings()
    # Worker processes are spawned fresh: they set up their own logging.
    configure_from_settings(settings)
    return create_app(settings, tune_gc=True, drain_on_sigterm=True, run_engines=True)

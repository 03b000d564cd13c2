"""Fleet test support: a PostgreSQL database, Redis or a shared data dir, vLLM profiles
run by a stand-in engine (fleet_engine.py), in-process gateways and `chatgate serve`s."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chatgate.db import migrate
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.engines.catalog import persist
from chatgate.settings import Settings
from tests.conftest import create_pg_database, drop_pg_database, gateway_settings
from tests.engines.fleet_engine import install_shim, write_profiles
from tests.fakes.upstream import FakeUpstream
from tests.helpers import free_port

LEASE_SECONDS = 1.5
SLOW_STREAM = "[[chunks=25 delay=0.1]] tell me"  # ~2.5 s of answer


@dataclass
class Fleet:
    tmp: Path
    database_url: str
    redis_url: str | None
    prefix: str
    shim: Path
    profiles: Path
    upstream: FakeUpstream

    def settings(self, name: str, **extra: Any) -> Settings:
        # With Redis every gateway has a data dir of its own (other hosts, as far as
        # it knows); without, they share one (workers of one serve).
        data_dir = self.tmp / (name if self.redis_url else "shared")
        values: dict[str, Any] = {
            "redis_url": self.redis_url,
            "redis_prefix": self.prefix,
            "profiles_dir": self.profiles,
            "vllm_python": str(self.shim),
            "engine_leader_lease_seconds": LEASE_SECONDS,
            "switch_drain_seconds": 20.0,
            "switch_ready_seconds": 30.0,
            "embedded_engine": True,  # the local engine is wanted (takeovers start it)
            "default_model": "alpha",
            **extra,
        }
        return gateway_settings(data_dir, self.database_url, self.upstream, **values)

    async def seed(self, settings: Settings) -> None:
        """What `chatgate serve --workers N` does first: name the engine to start."""
        from chatgate.cli.engine_start import seed_fleet

        await asyncio.to_thread(seed_fleet, settings)


@pytest_asyncio.fixture(name="fleet", params=["redis", "files"])
async def fleet_fixture(
    request: pytest.FixtureRequest, tmp_path: Path, upstream: FakeUpstream
) -> AsyncIterator[Fleet]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    name = await create_pg_database()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        await migrate.upgrade_async(url)
        engine = make_engine(url)
        async with make_sessionmaker(engine)() as session:
            await persist.save_active(session, "alpha")  # the profile switched to last
        await engine.dispose()
        profiles = write_profiles(tmp_path / "profiles", "alpha", "beta", slow="slowbeta")
        prefix = f"fleet-{uuid.uuid4().hex[:8]}"
        yield Fleet(tmp_path, url, redis_url, prefix, install_shim(tmp_path), profiles, upstream)
    finally:
        await drop_pg_database(name)


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 60) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None


async def holds(value: bool) -> bool:
    return value


async def serve_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"serve exited:\n{log_path.read_text()[-3000:]}")
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            return (await http.get(url + "/health/ready")).status_code == 200
    except httpx.TransportError:
        return False


def serve_env(fleet: Fleet, data_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env.update(
        CHATGATE_DATA_DIR=str(data_dir),
        CHATGATE_PORT=str(port),
        CHATGATE_DATABASE_URL=fleet.database_url,
        CHATGATE_JWT_SECRET="fleet-secret-" + "x" * 40,
        CHATGATE_ADMIN_PASSWORD="fleet-admin-password",
        CHATGATE_PROFILES_DIR=str(fleet.profiles),
        CHATGATE_VLLM_PYTHON=str(fleet.shim),
        CHATGATE_REDIS_PREFIX=fleet.prefix,
        CHATGATE_ENGINE_LEADER_LEASE_SECONDS=str(LEASE_SECONDS),
        CHATGATE_DEFAULT_MODEL="alpha",
        PYTHONUNBUFFERED="1",
    )
    if fleet.redis_url:
        env["CHATGATE_REDIS_URL"] = fleet.redis_url
    return env


Served = tuple[subprocess.Popen[bytes], str, Path]


@contextlib.contextmanager
def served(fleet: Fleet, name: str, *args: str) -> Iterator[Served]:
    """A real `chatgate serve` of the fleet (SIGTERM at the end, unless killed before)."""
    data_dir = fleet.tmp / (name if fleet.redis_url else "shared")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = fleet.tmp / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "chatgate", "serve", *args],
            env=serve_env(fleet, data_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log_path
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)

"""Shared fixtures: databases (SQLite and the machine's PostgreSQL), a fake upstream,
and a real uvicorn server running the gateway in this event loop."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from argon2 import PasswordHasher

from chatgate.auth import passwords
from chatgate.db import migrate
from chatgate.settings import Settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import FakeClock, Gateway, missing, start_gateway

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_DSN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
TEST_SECRET = "test-secret-" + "x" * 40


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a reason when a local service is absent; under CI=true, fail instead."""
    if port_open(host, port):
        return
    missing(f"{name} is not reachable at {host}:{port}")


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


async def create_pg_database() -> str:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"chatgate_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_pg_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _migrated_url(backend: str, tmp: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
        await migrate.upgrade_async(url)
        yield url
        return
    name = await create_pg_database()
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        await migrate.upgrade_async(url)
        yield url
    finally:
        await drop_pg_database(name)


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A freshly migrated database per test, on each backend."""
    async for url in _migrated_url(request.param, tmp_path):
        yield url


@pytest_asyncio.fixture(scope="session")
async def upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """``time.monotonic`` under the test's control (restored afterwards)."""
    fake = FakeClock()
    monkeypatch.setattr(time, "monotonic", fake)
    return fake


# Two fake engines: replicas of one model, for routing and failover tests.
Pair = tuple[FakeUpstream, FakeUpstream]


@pytest_asyncio.fixture(scope="module")
async def pair() -> AsyncIterator[Pair]:
    a, b = FakeUpstream(), FakeUpstream()
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


def gateway_settings(
    tmp: Path, database_url: str, upstream: FakeUpstream, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp,
        "database_url": database_url,
        "jwt_secret": TEST_SECRET,
        "engines": [f"fake-model={upstream.url}"],
        "default_model": "fake-model",
        "engine_connect_timeout": 2.0,
        "engine_ttft_timeout": 3.0,
        "engine_idle_timeout": 3.0,
        "auto_title": False,
        "embedded_engine": False,
        # limits are tested on purpose in tests/limits; elsewhere they stay out of the way
        "ratelimit_defaults": {"user": {}, "admin": {}},
        **extra,
    }
    return Settings(**values)


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgres"])
async def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeUpstream,
) -> AsyncIterator[Gateway]:
    """A running gateway (real uvicorn, real HTTP) in front of the fake upstream."""
    tmp = tmp_path_factory.mktemp(f"gw-{request.param}")
    async for url in _migrated_url(request.param, tmp):
        settings = gateway_settings(tmp, url, upstream)
        async with start_gateway(settings, upstream) as gw:
            yield gw


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("CHATGATE_"):
            monkeypatch.delenv(key)
    yield


@pytest.fixture(scope="module")
def fast_passwords() -> Iterator[None]:
    """Cheap argon2 parameters for API test modules that create many accounts
    (tests/auth/test_passwords_apikeys.py checks the real parameters)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )
        yield

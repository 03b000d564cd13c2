"""Limits end to end: requests/min, tokens/min, concurrent streams, budgets, login throttling,
shared counting through Redis across two gateways, and the Redis outage policy."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from chatgate.db import migrate
from chatgate.limits import admin
from chatgate.limits.policy import LimitPolicy
from tests.conftest import gateway_settings, require_service
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Account, Gateway, free_port, missing, start_gateway

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


async def set_key_limits(gateway: Gateway, account: Account, **limits: Any) -> None:
    async with gateway.state.sessionmaker() as db:
        key_id = await _key_id(gateway, account)
        await admin.set_key_limits(db, key_id, limits)


async def _key_id(gateway: Gateway, account: Account) -> int:
    async with gateway.client() as client:
        keys = (await client.get("/api/keys", headers=account.headers)).json()["keys"]
    return int(keys[0]["id"])


async def v1(
    gateway: Gateway, account: Account, body: dict[str, Any] | None = None
) -> httpx.Response:
    async with gateway.client() as client:
        return await client.post(
            "/v1/chat/completions", json=body or CHAT, headers=account.key_headers
        )


def test_policy_overlay_semantics() -> None:
    base = LimitPolicy(requests_per_minute=60, concurrent_streams=4)
    changed = base.overlay({"requests_per_minute": 10, "concurrent_streams": None})
    assert changed.requests_per_minute == 10 and changed.concurrent_streams is None
    assert base.overlay(None) is base and LimitPolicy().unlimited


async def test_key_limited_to_two_requests_per_minute(gateway: Gateway) -> None:
    account = await gateway.account()
    await set_key_limits(gateway, account, requests_per_minute=2)
    first, second, third = [await v1(gateway, account) for _ in range(3)]
    assert (first.status_code, second.status_code, third.status_code) == (200, 200, 429)
    assert first.headers["X-RateLimit-Limit"] == "2"
    assert first.headers["X-RateLimit-Remaining"] == "1"
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    assert third.json()["error"]["type"] == "rate_limit_error"
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    # the web chat of the same user is not limited by the key's own limit
    events, response = await gateway.chat(account, message="hello")
    assert response.status_code == 200


async def test_user_limits_apply_to_web_chat_and_keys(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.state.sessionmaker() as db:
        await admin.set_user_limits(db, account.user_id, {"requests_per_minute": 1})
    fresh = await relogin(gateway, account)
    _, ok = await gateway.chat(fresh, message="one")
    _, limited = await gateway.chat(fresh, message="two")
    assert ok.status_code == 200 and limited.status_code == 429
    assert (await v1(gateway, account)).status_code == 429, "keys share their user's limits"


async def relogin(gateway: Gateway, account: Account) -> Account:
    """A new token, so the identity picks up changed user limits."""
    async with gateway.client() as client:
        response = await client.post(
            "/api/auth/login",
            json={"username": account.username, "password": "correct-horse-battery"},
        )
    return Account(
        account.user_id, account.username, response.json()["access_token"], account.api_key
    )


async def test_concurrent_streams_limit(gateway: Gateway) -> None:
    account = await gateway.account()
    await set_key_limits(gateway, account, concurrent_streams=1)
    slow = {
        **CHAT,
        "stream": True,
        "messages": [{"role": "user", "content": "slow [[chunks=30 delay=0.03]]"}],
    }
    async with gateway.client() as client:
        async with client.stream(
            "POST", "/v1/chat/completions", json=slow, headers=account.key_headers
        ) as running:
            assert running.status_code == 200
            blocked = await v1(gateway, account)
            await running.aread()
    assert blocked.status_code == 429 and "concurrent" in blocked.json()["error"]["message"]
    await asyncio.sleep(0.1)  # the slot is freed as the finished call is accounted
    assert (await v1(gateway, account)).status_code == 200


async def test_tokens_per_minute_and_daily_budget(gateway: Gateway) -> None:
    account = await gateway.account()
    await set_key_limits(gateway, account, tokens_per_minute=5)
    assert (await v1(gateway, account)).status_code == 200  # uses 7+ tokens
    await asyncio.sleep(0.1)
    over = await v1(gateway, account)
    assert over.status_code == 429 and "tokens per minute" in over.json()["error"]["message"]

    budget = await gateway.account()
    await set_key_limits(gateway, budget, tokens_per_day=5)
    assert (await v1(gateway, budget)).status_code == 200
    spent = await v1(gateway, budget)
    assert spent.status_code == 429
    assert int(spent.headers["Retry-After"]) <= 86400
    async with gateway.client() as client:
        mine = (await client.get("/api/limits/me", headers=budget.key_headers)).json()["limits"]
    key_entry = next(entry for entry in mine if entry["subject"].startswith("key:"))
    assert key_entry["tokens_per_day"] == 5 and key_entry["tokens_used_day"] >= 7


async def test_login_throttling(tmp_path: Path, upstream: FakeUpstream) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(tmp_path, url, upstream, login_failures_per_user=3)
    async with start_gateway(settings, upstream) as gateway:
        account = await gateway.account()
        async with gateway.client() as client:

            async def login(password: str) -> httpx.Response:
                return await client.post(
                    "/api/auth/login", json={"username": account.username, "password": password}
                )

            codes = [(await login("wrong-password")).status_code for _ in range(3)]
            blocked = await login("correct-horse-battery")
    assert codes == [401, 401, 401]
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    assert blocked.json()["error"]["code"] == "too_many_login_attempts"


async def test_admin_limits_api(gateway: Gateway) -> None:
    admin_account, user = await gateway.account("admin"), await gateway.account()
    async with gateway.client() as client:
        forbidden = await client.put(
            "/api/admin/limits/roles/user", json={"requests_per_minute": 1}, headers=user.headers
        )
        bad = await client.put(
            "/api/admin/limits/roles/user", json={"bogus": 1}, headers=admin_account.headers
        )
        negative = await client.put(
            f"/api/admin/users/{user.user_id}/limits",
            json={"tokens_per_day": -5},
            headers=admin_account.headers,
        )
        role = await client.put(
            "/api/admin/limits/roles/admin",
            json={"tokens_per_month": 10**9},
            headers=admin_account.headers,
        )
        listing = await client.get("/api/admin/limits", headers=admin_account.headers)
    assert forbidden.status_code == 403 and bad.status_code == 400
    assert negative.status_code == 400
    assert role.json()["effective"]["tokens_per_month"] == 10**9
    assert listing.json()["roles"]["admin"]["tokens_per_month"] == 10**9


# --------------------------------------------------------------------------- Redis


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A private redis-server this test may stop and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server is not installed")
    port = free_port()
    server: dict[str, Any] = {"port": port, "process": None, "binary": binary}

    def start() -> None:
        server["process"] = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(tmp_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with __import__("socket").create_connection(("127.0.0.1", port), 0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop() -> None:
        if server["process"] is not None:
            server["process"].terminate()
            server["process"].wait(10)
            server["process"] = None

    server.update(start=start, stop=stop, url=f"redis://127.0.0.1:{port}/0")
    start()
    yield server
    stop()


@pytest_asyncio.fixture
async def pg_free_sqlite(tmp_path: Path) -> AsyncIterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.sqlite'}"
    await migrate.upgrade_async(url)
    yield url


async def test_limit_is_shared_across_two_gateways(
    redis_url: str, pg_free_sqlite: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    require_service("Redis", "127.0.0.1", 6379)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    settings = gateway_settings(
        tmp_path, pg_free_sqlite, upstream, redis_url=redis_url, redis_prefix=prefix
    )
    async with start_gateway(settings, upstream) as one, start_gateway(settings, upstream) as two:
        account = await one.account()
        await set_key_limits(one, account, requests_per_minute=2)
        codes = [(await v1(gw, account)).status_code for gw in (one, two, one, two)]
    assert codes == [200, 200, 429, 429], "the limit holds in total, not per gateway"


async def fallback_gauge(gateway: Gateway) -> float:
    async with gateway.client() as client:
        text = (await client.get("/metrics")).text
    line = next(row for row in text.splitlines() if row.startswith("chatgate_ratelimit_fallback"))
    return float(line.split()[-1])


async def test_redis_outage_fails_open_and_recovers(
    own_redis: dict[str, Any], pg_free_sqlite: str, tmp_path: Path, upstream: FakeUpstream
) -> None:
    settings = gateway_settings(
        tmp_path,
        pg_free_sqlite,
        upstream,
        redis_url=own_redis["url"],
        ratelimit_retry_seconds=0.3,
        ratelimit_defaults={"user": {"requests_per_minute": 1000}},
    )
    async with start_gateway(settings, upstream) as gateway:
        account = await gateway.account()
        assert (await v1(gateway, account)).status_code == 200
        assert await fallback_gauge(gateway) == 0
        own_redis["stop"]()
        during = [(await v1(gateway, account)).status_code for _ in range(3)]
        assert during == [200, 200, 200], "requests keep being served"
        assert await fallback_gauge(gateway) == 1
        async with gateway.client() as client:
            ready = await client.get("/health/ready")
        # Still in rotation: a Redis outage must not take every gateway pod out of service.
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["redis"]["status"] == "degraded (fail-open)"
        own_redis["start"]()
        await asyncio.sleep(0.4)
        assert (await v1(gateway, account)).status_code == 200
        assert await fallback_gauge(gateway) == 0
        keys = subprocess.run(
            ["redis-cli", "-p", str(own_redis["port"]), "--scan"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "limits" in keys, "counting is shared in Redis again"

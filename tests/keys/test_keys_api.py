"""/api/keys: named API keys, shown once, stored hashed, revocable, expiring, owner-scoped."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from chatgate.auth.cache import invalidate_key
from chatgate.db.models import ApiKey, Base
from tests.helpers import Account, Gateway

pytestmark = pytest.mark.usefixtures("fast_passwords")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"type", "message", "code", "param"}
    if code is not None:
        assert error["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    return error


async def create_key(gateway: Gateway, account: Account, **body: Any) -> dict[str, Any]:
    async with gateway.client() as client:
        response = await client.post(
            "/api/keys", json={"name": "my key", **body}, headers=account.headers
        )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def key_statuses(gateway: Gateway, key: str) -> tuple[int, int]:
    async with gateway.client() as client:
        me = await client.get("/api/users/me", headers=bearer(key))
        models = await client.get("/v1/models", headers=bearer(key))
    return me.status_code, models.status_code


async def test_create_shows_the_key_once(gateway: Gateway) -> None:
    account = await gateway.account()
    created = await create_key(gateway, account, name="laptop", scopes=["chat"])
    key = created["key"]
    assert key.startswith("sk-cg-") and len(key) >= 40
    assert created["name"] == "laptop"
    assert created["prefix"] == key[: len(created["prefix"])]
    assert len(created["prefix"]) < len(key) - 30
    assert created["scopes"] == ["chat"]
    assert created["revoked_at"] is None and created["expires_at"] is None
    async with gateway.client() as client:
        listing = await client.get("/api/keys", headers=account.headers)
    assert listing.status_code == 200
    keys = listing.json()["keys"]
    assert [k["name"] for k in keys] == ["test key", "laptop"]  # the helper's key comes first
    listed = next(k for k in keys if k["id"] == created["id"])
    assert "key" not in listed
    assert listed["prefix"] == created["prefix"]
    assert key not in listing.text and account.api_key not in listing.text
    assert key[len(created["prefix"]):] not in listing.text


async def test_key_authenticates_api_and_v1(gateway: Gateway) -> None:
    account = await gateway.account()
    key = (await create_key(gateway, account))["key"]
    assert await key_statuses(gateway, key) == (200, 200)
    async with gateway.client() as client:
        me = await client.get("/api/users/me", headers=bearer(key))
        models = await client.get("/v1/models", headers=bearer(key))
    assert me.json()["id"] == account.user_id
    assert "fake-model" in [m["id"] for m in models.json()["data"]]


async def test_key_use_is_recorded(gateway: Gateway) -> None:
    account = await gateway.account()
    created = await create_key(gateway, account)
    assert created["last_used_at"] is None
    await key_statuses(gateway, created["key"])
    async with gateway.client() as client:
        keys = (await client.get("/api/keys", headers=account.headers)).json()["keys"]
    used = next(k for k in keys if k["id"] == created["id"])
    assert used["last_used_at"] is not None
    last_used = datetime.fromisoformat(used["last_used_at"])
    assert abs((datetime.now(UTC) - last_used).total_seconds()) < 60


async def test_revoked_key_is_401(gateway: Gateway) -> None:
    account = await gateway.account()
    created = await create_key(gateway, account)
    key = created["key"]
    async with gateway.client() as client:
        response = await client.delete(f"/api/keys/{created['id']}", headers=account.headers)
        assert response.status_code == 200, response.text
        revoked_at = response.json()["revoked_at"]
        assert revoked_at is not None
        # Revoking again is harmless and keeps the first time.
        again = await client.delete(f"/api/keys/{created['id']}", headers=account.headers)
        assert again.status_code == 200 and again.json()["revoked_at"] == revoked_at
        for path in ("/api/users/me", "/v1/models", "/api/keys"):
            error = assert_error(await client.get(path, headers=bearer(key)), 401)
            assert "revoked" in error["message"]
        listing = (await client.get("/api/keys", headers=account.headers)).json()["keys"]
    assert next(k for k in listing if k["id"] == created["id"])["revoked_at"] == revoked_at
    # The other key of the same user still works.
    assert await key_statuses(gateway, account.api_key) == (200, 200)


async def test_expired_key_is_401(gateway: Gateway) -> None:
    account = await gateway.account()
    soon = datetime.now(UTC) + timedelta(hours=1)
    created = await create_key(gateway, account, expires_at=soon.isoformat())
    assert datetime.fromisoformat(created["expires_at"]) == soon
    assert await key_statuses(gateway, created["key"]) == (200, 200)
    async with gateway.state.sessionmaker() as db:
        await db.execute(
            update(ApiKey)
            .where(ApiKey.id == created["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await db.commit()
    # Written behind the gateway's back: the identity cache would see it only after its TTL.
    invalidate_key(created["id"])
    assert await key_statuses(gateway, created["key"]) == (401, 401)
    async with gateway.client() as client:
        error = assert_error(await client.get("/v1/models", headers=bearer(created["key"])), 401)
    assert "expired" in error["message"]


async def test_naive_expiry_means_utc(gateway: Gateway) -> None:
    """A timestamp without a zone is UTC on every backend, whatever the server's local zone."""
    account = await gateway.account()
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        past = (datetime.now(UTC) - timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
        created = await create_key(gateway, account, expires_at=past.isoformat())
        echoed = datetime.fromisoformat(created["expires_at"])
        assert echoed == past.replace(tzinfo=UTC)
        assert await key_statuses(gateway, created["key"]) == (401, 401)
        future = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None, microsecond=0)
        valid = await create_key(gateway, account, expires_at=future.isoformat())
        assert await key_statuses(gateway, valid["key"]) == (200, 200)
    finally:
        if old_tz is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old_tz
        time.tzset()


async def test_unknown_keys_are_401(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        for key in ("sk-cg-" + "A" * 40, account.api_key + "x", account.api_key[:-1], "sk-cg-"):
            for path in ("/api/users/me", "/v1/models"):
                assert_error(await client.get(path, headers=bearer(key)), 401)


async def test_users_cannot_touch_other_users_keys(gateway: Gateway) -> None:
    owner = await gateway.account()
    intruder = await gateway.account()
    created = await create_key(gateway, owner)
    async with gateway.client() as client:
        response = await client.delete(f"/api/keys/{created['id']}", headers=intruder.headers)
        assert_error(response, 404, "not_found")
        listing = await client.get("/api/keys", headers=intruder.headers)
        assert_error(await client.delete("/api/keys/999999999", headers=owner.headers), 404)
    assert created["id"] not in [k["id"] for k in listing.json()["keys"]]
    assert owner.api_key not in listing.text
    assert await key_statuses(gateway, created["key"]) == (200, 200)


async def test_keys_cannot_manage_keys(gateway: Gateway) -> None:
    """Credentials are managed from a login session only: a leaked key cannot mint more."""
    account = await gateway.account()
    async with gateway.client() as client:
        create = await client.post(
            "/api/keys", json={"name": "made by a key"}, headers=account.key_headers
        )
        listing = await client.get("/api/keys", headers=account.key_headers)
        mine = await client.get("/api/keys", headers=account.headers)
    assert_error(create, 403, "forbidden")
    assert_error(listing, 403, "forbidden")
    assert {k["name"] for k in mine.json()["keys"]} == {"test key"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({}, "name"),
        ({"name": "ok", "expires_at": "next tuesday"}, "expires_at"),
        ({"name": "ok", "scopes": "chat"}, "scopes"),
    ],
)
async def test_create_validation(gateway: Gateway, body: dict[str, Any], param: str) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.post("/api/keys", json=body, headers=account.headers)
        error = assert_error(response, 400, "invalid_request")
        listing = await client.get("/api/keys", headers=account.headers)
    assert error["param"] == param
    assert len(listing.json()["keys"]) == 1


async def test_keys_are_stored_hashed_only(gateway: Gateway) -> None:
    account = await gateway.account()
    created = await create_key(gateway, account, name="secret-check")
    key = created["key"]
    secret_part = key[len(created["prefix"]):]
    await key_statuses(gateway, key)  # use it, so usage/last-used rows are written too
    async with gateway.state.sessionmaker() as db:
        row = await db.scalar(select(ApiKey).where(ApiKey.id == created["id"]))
        assert row is not None
        assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert row.prefix == created["prefix"]
        dump = []
        for table in Base.metadata.sorted_tables:
            for values in (await db.execute(select(table))).all():
                dump.append(repr(tuple(values)))
    everything = "\n".join(dump)
    assert row.key_hash in everything  # the dump did see the keys table
    assert key not in everything and secret_part not in everything
    assert account.api_key not in everything
    if gateway.settings.is_sqlite:
        database = gateway.settings.resolved_database_url.split("///", 1)[1]
        for suffix in ("", "-wal"):
            if os.path.exists(database + suffix):
                with open(database + suffix, "rb") as handle:
                    raw = handle.read()
                assert secret_part.encode() not in raw

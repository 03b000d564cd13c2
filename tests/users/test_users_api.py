"""/api/users/me (self-service) and /api/admin/users (admin CRUD, role checks)."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from chatgate.db.models import AuthSession, User
from tests.helpers import PASSWORD, Account, Gateway

pytestmark = pytest.mark.usefixtures("fast_passwords")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"type", "message", "code", "param"}
    if code is not None:
        assert error["code"] == code
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    return error


def new_name(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def login_status(gateway: Gateway, username: str, password: str = PASSWORD) -> int:
    async with gateway.client() as client:
        response = await client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )
    return response.status_code


async def statuses(gateway: Gateway, account: Account) -> tuple[int, int]:
    """(/api/users/me with the login token, with the API key)."""
    async with gateway.client() as client:
        by_token = await client.get("/api/users/me", headers=account.headers)
        by_key = await client.get("/api/users/me", headers=account.key_headers)
    return by_token.status_code, by_key.status_code


# --- self-service -------------------------------------------------------------------


async def test_me_shows_the_profile_without_secrets(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        by_token = await client.get("/api/users/me", headers=account.headers)
        by_key = await client.get("/api/users/me", headers=account.key_headers)
    assert by_token.status_code == 200
    body = by_token.json()
    assert by_key.json() == body
    assert body["id"] == account.user_id
    assert body["username"] == account.username
    assert body["role"] == "user" and body["disabled"] is False
    assert body["settings"] == {}
    assert "password_hash" not in body
    assert "argon2" not in by_token.text


async def test_settings_update_merge_and_clear(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.patch(
            "/api/users/me/settings",
            json={
                "default_model": "fake-model",
                "system_prompt": "Answer in haiku.",
                "temperature": 0.3,
                "top_p": 0.9,
                "max_tokens": 256,
                "language": "ko",
            },
            headers=account.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["settings"] == {
            "default_model": "fake-model",
            "system_prompt": "Answer in haiku.",
            "temperature": 0.3,
            "top_p": 0.9,
            "max_tokens": 256,
            "language": "ko",
        }
        # Partial update keeps the rest; null removes a setting.
        response = await client.patch(
            "/api/users/me/settings",
            json={"temperature": 1.5, "system_prompt": None},
            headers=account.headers,
        )
        assert response.status_code == 200
        settings = response.json()["settings"]
        assert settings["temperature"] == 1.5
        assert "system_prompt" not in settings
        assert settings["language"] == "ko" and settings["max_tokens"] == 256
        # Stored: a fresh read (and the API key) sees the same.
        me = await client.get("/api/users/me", headers=account.key_headers)
    assert me.json()["settings"] == settings


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"language": "x" * 17}, "language"),
        ({"favourite_colour": "blue"}, "favourite_colour"),
        ({"role": "admin"}, "role"),
    ],
)
async def test_settings_validation(gateway: Gateway, body: dict[str, Any], param: str) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.patch("/api/users/me/settings", json=body, headers=account.headers)
        error = assert_error(response, 400, "invalid_request")
        assert error["param"] == param
        me = await client.get("/api/users/me", headers=account.headers)
    assert me.json()["settings"] == {}
    assert me.json()["role"] == "user"


# --- role checks ---------------------------------------------------------------------


def admin_routes(gateway: Gateway) -> list[tuple[str, str]]:
    """Every /api/admin operation the app documents (so routes added later are covered)."""
    routes = []
    for path, operations in gateway.app.openapi()["paths"].items():
        if path.startswith("/api/admin"):
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            routes += [(method.upper(), concrete) for method in sorted(operations)]
    return routes


async def test_normal_users_get_403_on_every_admin_route(gateway: Gateway) -> None:
    account = await gateway.account()
    routes = admin_routes(gateway)
    assert ("GET", "/api/admin/users") in routes and ("PATCH", "/api/admin/users/1") in routes
    async with gateway.client() as client:
        for headers in (account.headers, account.key_headers):
            for method, path in routes:
                body = {} if method in ("POST", "PATCH", "PUT") else None
                response = await client.request(method, path, json=body, headers=headers)
                assert response.status_code == 403, (method, path, response.text)
                assert_error(response, 403, "forbidden")
                assert response.json()["error"]["type"] == "permission_error"
            # Nothing slipped through: a create attempt with a valid body is refused too.
            response = await client.post(
                "/api/admin/users",
                json={"username": new_name(), "password": PASSWORD, "role": "admin"},
                headers=headers,
            )
            assert_error(response, 403)
        response = await client.patch(
            f"/api/admin/users/{account.user_id}", json={"role": "admin"}, headers=account.headers
        )
        assert_error(response, 403)
        me = await client.get("/api/users/me", headers=account.headers)
    assert me.json()["role"] == "user"


async def test_admin_routes_need_authentication(gateway: Gateway) -> None:
    async with gateway.client() as client:
        for method, path in admin_routes(gateway):
            body = {} if method in ("POST", "PATCH", "PUT") else None
            assert_error(await client.request(method, path, json=body), 401)


# --- admin CRUD ----------------------------------------------------------------------


async def test_admin_creates_lists_gets_and_updates_users(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    name = new_name("new")
    email = f"{name}@example.com"
    async with gateway.client() as client:
        response = await client.post(
            "/api/admin/users",
            json={"username": name, "password": PASSWORD, "email": email},
            headers=admin.headers,
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["username"] == name and created["email"] == email
        assert created["role"] == "user" and created["disabled"] is False
        assert "password_hash" not in created
        user_id = created["id"]

        listing = await client.get("/api/admin/users", headers=admin.headers)
        assert listing.status_code == 200
        listed = {user["id"]: user for user in listing.json()["users"]}
        assert listed[user_id] == created
        assert admin.user_id in listed
        assert "argon2" not in listing.text

        got = await client.get(f"/api/admin/users/{user_id}", headers=admin.headers)
        assert got.json() == created

        new_email = f"{name}@example.org"
        response = await client.patch(
            f"/api/admin/users/{user_id}",
            json={"email": new_email, "role": "admin"},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["email"] == new_email and response.json()["role"] == "admin"
        got = await client.get(f"/api/admin/users/{user_id}", headers=admin.headers)
        assert got.json()["role"] == "admin"

        # The e-mail can be cleared again.
        response = await client.patch(
            f"/api/admin/users/{user_id}", json={"email": None}, headers=admin.headers
        )
        assert response.status_code == 200
        assert response.json()["email"] is None
    assert await login_status(gateway, name) == 200


async def test_admin_creates_admins(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    name = new_name("adm")
    async with gateway.client() as client:
        response = await client.post(
            "/api/admin/users",
            json={"username": name, "password": PASSWORD, "role": "admin"},
            headers=admin.headers,
        )
        assert response.status_code == 201
        token = (await client.post(
            "/api/auth/login", json={"username": name, "password": PASSWORD}
        )).json()["access_token"]
        listing = await client.get(
            "/api/admin/users", headers={"Authorization": f"Bearer {token}"}
        )
    assert listing.status_code == 200


async def test_duplicates_are_409(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    other = await gateway.account()
    email = f"{new_name()}@example.com"
    async with gateway.client() as client:
        first = await client.post(
            "/api/admin/users",
            json={"username": new_name(), "password": PASSWORD, "email": email},
            headers=admin.headers,
        )
        assert first.status_code == 201
        same_name = await client.post(
            "/api/admin/users",
            json={"username": other.username, "password": PASSWORD},
            headers=admin.headers,
        )
        assert_error(same_name, 409, "user_exists")
        same_email = await client.post(
            "/api/admin/users",
            json={"username": new_name(), "password": PASSWORD, "email": email},
            headers=admin.headers,
        )
        assert_error(same_email, 409, "user_exists")
        taken = await client.patch(
            f"/api/admin/users/{other.user_id}", json={"email": email}, headers=admin.headers
        )
        assert_error(taken, 409)
        # The failed updates left nothing half-written, and the server still works.
        got = await client.get(f"/api/admin/users/{other.user_id}", headers=admin.headers)
    assert got.json()["email"] is None


async def test_empty_emails_do_not_collide(gateway: Gateway) -> None:
    """A form that sends "" for "no e-mail" must not make the second such user a duplicate."""
    admin = await gateway.account("admin")
    async with gateway.client() as client:
        for _ in range(2):
            response = await client.post(
                "/api/admin/users",
                json={"username": new_name(), "password": PASSWORD, "email": ""},
                headers=admin.headers,
            )
            assert response.status_code == 201, response.text
            assert response.json()["email"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"username": "has space", "password": PASSWORD}, "username"),
        ({"username": "x" * 65, "password": PASSWORD}, "username"),
        ({"username": "", "password": PASSWORD}, "username"),
        ({"username": "ok-name", "password": "short"}, "password"),
        ({"username": "ok-name", "password": PASSWORD, "role": "root"}, "role"),
        ({"password": PASSWORD}, "username"),
    ],
)
async def test_create_user_validation(
    gateway: Gateway, body: dict[str, Any], param: str
) -> None:
    admin = await gateway.account("admin")
    async with gateway.client() as client:
        response = await client.post("/api/admin/users", json=body, headers=admin.headers)
    error = assert_error(response, 400, "invalid_request")
    assert error["param"] == param


async def test_unknown_user_is_404(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    async with gateway.client() as client:
        assert_error(await client.get("/api/admin/users/999999999", headers=admin.headers), 404)
        response = await client.patch(
            "/api/admin/users/999999999", json={"disabled": True}, headers=admin.headers
        )
        assert_error(response, 404)
        assert_error(await client.get("/api/admin/users/abc", headers=admin.headers), 400)


async def test_admin_cannot_lock_themselves_out(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    async with gateway.client() as client:
        for body in ({"disabled": True}, {"role": "user"}, {"role": "user", "disabled": False}):
            response = await client.patch(
                f"/api/admin/users/{admin.user_id}", json=body, headers=admin.headers
            )
            assert_error(response, 400, "self_lockout")
        # Harmless self-edits are fine.
        response = await client.patch(
            f"/api/admin/users/{admin.user_id}",
            json={"email": f"{admin.username}@example.com", "role": "admin", "disabled": False},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        me = await client.get("/api/users/me", headers=admin.headers)
    assert me.json()["role"] == "admin" and me.json()["disabled"] is False


async def test_disabling_a_user_cuts_off_token_and_key(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    account = await gateway.account()
    assert await statuses(gateway, account) == (200, 200)
    async with gateway.client() as client:
        response = await client.patch(
            f"/api/admin/users/{account.user_id}", json={"disabled": True}, headers=admin.headers
        )
        assert response.status_code == 200 and response.json()["disabled"] is True
    assert await statuses(gateway, account) == (401, 401)
    assert await login_status(gateway, account.username) == 401
    async with gateway.state.sessionmaker() as db:
        sessions = (await db.scalars(
            select(AuthSession).where(AuthSession.user_id == account.user_id)
        )).all()
    assert sessions and all(session.revoked_at is not None for session in sessions)

    # Re-enabling restores the key and logins; the old session stays ended.
    async with gateway.client() as client:
        response = await client.patch(
            f"/api/admin/users/{account.user_id}", json={"disabled": False}, headers=admin.headers
        )
        assert response.status_code == 200
    assert await statuses(gateway, account) == (401, 200)
    assert await login_status(gateway, account.username) == 200


async def test_disabled_users_cannot_chat_with_a_key(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    account = await gateway.account()
    async with gateway.client() as client:
        await client.patch(
            f"/api/admin/users/{account.user_id}", json={"disabled": True}, headers=admin.headers
        )
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
            headers=account.key_headers,
        )
    assert_error(response, 401)


async def test_role_changes_apply_to_live_tokens(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    other_admin = await gateway.account("admin")
    user = await gateway.account()
    async with gateway.client() as client:
        before = await client.get("/api/admin/users", headers=other_admin.headers)
        assert before.status_code == 200
        await client.patch(
            f"/api/admin/users/{other_admin.user_id}", json={"role": "user"},
            headers=admin.headers,
        )
        await client.patch(
            f"/api/admin/users/{user.user_id}", json={"role": "admin"}, headers=admin.headers
        )
        demoted = await client.get("/api/admin/users", headers=other_admin.headers)
        demoted_key = await client.get("/api/admin/users", headers=other_admin.key_headers)
        promoted = await client.get("/api/admin/users", headers=user.headers)
    assert_error(demoted, 403)
    assert_error(demoted_key, 403)
    assert promoted.status_code == 200


async def test_admin_password_reset(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    account = await gateway.account()
    new_password = "reset-by-the-admin"
    async with gateway.client() as client:
        response = await client.patch(
            f"/api/admin/users/{account.user_id}",
            json={"password": new_password},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        assert "password" not in response.json()
        short = await client.patch(
            f"/api/admin/users/{account.user_id}", json={"password": "short"},
            headers=admin.headers,
        )
        assert_error(short, 400)
    assert await statuses(gateway, account) == (401, 200)  # sessions end; keys stay
    assert await login_status(gateway, account.username, PASSWORD) == 401
    assert await login_status(gateway, account.username, new_password) == 200
    async with gateway.state.sessionmaker() as db:
        stored = await db.scalar(select(User.password_hash).where(User.id == account.user_id))
    assert stored is not None and stored.startswith("$argon2id$") and new_password not in stored

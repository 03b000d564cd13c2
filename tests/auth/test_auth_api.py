"""/api/auth: login, verify, refresh, logout, and every way a bearer token must fail."""

from __future__ import annotations

import asyncio
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update

from chatgate.auth import passwords
from chatgate.auth.cache import invalidate_user
from chatgate.auth.tokens import TokenCodec
from chatgate.db.models import AuthSession, User
from chatgate.users import service as users
from tests.conftest import TEST_SECRET
from tests.helpers import PASSWORD, Gateway

REAL_HASHER = passwords._hasher


pytestmark = pytest.mark.usefixtures("fast_passwords")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"type", "message", "code", "param"}
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code
    if status == 401:
        assert error["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"
    return error


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(gateway: Gateway, username: str, password: str = PASSWORD) -> httpx.Response:
    async with gateway.client() as client:
        return await client.post(
            "/api/auth/login", json={"username": username, "password": password}
        )


async def tokens_for(gateway: Gateway, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await login(gateway, username, password)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def me_status(gateway: Gateway, token: str) -> int:
    async with gateway.client() as client:
        return (await client.get("/api/users/me", headers=bearer(token))).status_code


def unverified(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def resign(payload: dict[str, Any], secret: str | None, algorithm: str = "HS256") -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyJWT warns about HMAC key length for HS512
        return jwt.encode(payload, secret, algorithm=algorithm)


async def test_login_returns_working_tokens(gateway: Gateway) -> None:
    account = await gateway.account()
    body = await tokens_for(gateway, account.username)
    assert set(body) == {
        "access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"
    }
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    assert body["refresh_expires_in"] == 7 * 24 * 3600
    assert body["access_token"] != body["refresh_token"]
    async with gateway.client() as client:
        response = await client.get("/api/auth/verify", headers=bearer(body["access_token"]))
    assert response.status_code == 200
    verified = response.json()
    assert verified["username"] == account.username
    assert verified["role"] == "user"
    assert verified["user_id"] == account.user_id
    assert abs(verified["exp"] - (time.time() + 1800)) < 10


async def test_verify_reports_admin_role(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    async with gateway.client() as client:
        response = await client.get("/api/auth/verify", headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["role"] == "admin"


async def test_verify_with_api_key(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.get("/api/auth/verify", headers=account.key_headers)
    assert response.status_code == 200
    assert response.json() == {
        "username": account.username, "role": "user", "exp": None, "user_id": account.user_id
    }


async def test_wrong_password_and_unknown_user_look_the_same(gateway: Gateway) -> None:
    account = await gateway.account()
    wrong = assert_error(await login(gateway, account.username, "wrong-password"), 401)
    unknown = assert_error(await login(gateway, f"nobody-{uuid.uuid4().hex[:8]}"), 401)
    assert wrong == unknown
    assert "password" in wrong["message"].lower()
    # A wrong password creates no session.
    async with gateway.state.sessionmaker() as db:
        sessions = (await db.scalars(
            select(AuthSession).where(AuthSession.user_id == account.user_id)
        )).all()
    assert len(sessions) == 1  # only the helper's own login


async def test_username_is_case_sensitive_and_exact(gateway: Gateway) -> None:
    account = await gateway.account()
    assert_error(await login(gateway, account.username.upper()), 401)
    assert_error(await login(gateway, account.username + " "), 401)


async def test_disabled_user_cannot_log_in(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.state.sessionmaker() as db:
        user = await users.get_user(db, account.user_id)
        await users.set_disabled(db, user, True)
    error = assert_error(await login(gateway, account.username), 401)
    assert "disabled" in error["message"].lower()
    # ...and a wrong password still says only "incorrect" (no account-state oracle).
    error = assert_error(await login(gateway, account.username, "wrong-password"), 401)
    assert "disabled" not in error["message"].lower()


async def test_disabled_user_cannot_refresh(gateway: Gateway) -> None:
    account = await gateway.account()
    tokens = await tokens_for(gateway, account.username)
    async with gateway.state.sessionmaker() as db:
        await db.execute(update(User).where(User.id == account.user_id).values(disabled=True))
        await db.commit()  # disabled directly in the DB: the sessions are still open
    invalidate_user(account.user_id)  # a direct write: the identity cache would wait its TTL
    async with gateway.client() as client:
        response = await client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
    assert_error(response, 401)
    assert await me_status(gateway, tokens["access_token"]) == 401
    assert await me_status(gateway, account.api_key) == 401


@pytest.mark.parametrize(
    "body", [{}, {"username": "", "password": "x"}, {"username": "x"}, {"password": "x"}]
)
async def test_login_validation(gateway: Gateway, body: dict[str, Any]) -> None:
    async with gateway.client() as client:
        response = await client.post("/api/auth/login", json=body)
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Token abc"},
    ],
)
async def test_missing_or_malformed_header_is_401(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    async with gateway.client() as client:
        for path in ("/api/users/me", "/api/auth/verify", "/api/conversations", "/v1/models"):
            assert_error(await client.get(path, headers=headers), 401)
        assert_error(await client.post("/api/auth/logout", headers=headers), 401)


async def test_refresh_gives_a_working_access_token(gateway: Gateway) -> None:
    account = await gateway.account()
    first = await tokens_for(gateway, account.username)
    async with gateway.client() as client:
        response = await client.post(
            "/api/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert response.status_code == 200, response.text
        renewed = response.json()
        assert renewed["token_type"] == "bearer"
        assert renewed["access_token"] != first["access_token"]
        verify = await client.get("/api/auth/verify", headers=bearer(renewed["access_token"]))
    assert verify.status_code == 200
    assert verify.json()["username"] == account.username
    # Same login session: both access tokens name it.
    assert unverified(renewed["access_token"])["sid"] == unverified(first["access_token"])["sid"]


async def test_refresh_and_access_tokens_are_not_interchangeable(gateway: Gateway) -> None:
    account = await gateway.account()
    tokens = await tokens_for(gateway, account.username)
    async with gateway.client() as client:
        for path in ("/api/users/me", "/api/auth/verify", "/v1/models"):
            response = await client.get(path, headers=bearer(tokens["refresh_token"]))
            assert_error(response, 401)
        response = await client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["access_token"]}
        )
        assert_error(response, 401)
        for junk in ("junk", account.api_key, "a.b.c"):
            assert_error(await client.post("/api/auth/refresh", json={"refresh_token": junk}), 401)


async def test_logout_ends_the_session(gateway: Gateway) -> None:
    account = await gateway.account()
    tokens = await tokens_for(gateway, account.username)
    other = await tokens_for(gateway, account.username)
    async with gateway.client() as client:
        response = await client.post("/api/auth/logout", headers=bearer(tokens["access_token"]))
        assert response.status_code == 204
        assert response.content == b""
        assert_error(await client.get("/api/users/me", headers=bearer(tokens["access_token"])), 401)
        response = await client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert_error(response, 401)
        # A second logout with the dead token is refused too.
        assert_error(await client.post("/api/auth/logout", headers=bearer(tokens["access_token"])),
                     401)
    # Other logins of the same user and the API key are unaffected.
    assert await me_status(gateway, other["access_token"]) == 200
    assert await me_status(gateway, account.token) == 200
    assert await me_status(gateway, account.api_key) == 200


async def test_logout_revokes_tokens_refreshed_from_the_session(gateway: Gateway) -> None:
    account = await gateway.account()
    tokens = await tokens_for(gateway, account.username)
    async with gateway.client() as client:
        renewed = (await client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )).json()
        response = await client.post("/api/auth/logout", headers=bearer(renewed["access_token"]))
        assert response.status_code == 204
    assert await me_status(gateway, tokens["access_token"]) == 401
    assert await me_status(gateway, renewed["access_token"]) == 401


async def test_api_keys_cannot_log_out(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.post("/api/auth/logout", headers=account.key_headers)
    assert_error(response, 403, "forbidden")
    assert await me_status(gateway, account.api_key) == 200


async def test_expired_access_token_is_401(gateway: Gateway) -> None:
    account = await gateway.account()
    claims = unverified(account.token)
    expired, _ = gateway.state.tokens.encode(
        user_id=account.user_id,
        username=account.username,
        role="user",
        session_id=claims["sid"],
        kind="access",
        lifetime=timedelta(seconds=-60),
    )
    fresh, _ = gateway.state.tokens.encode(
        user_id=account.user_id,
        username=account.username,
        role="user",
        session_id=claims["sid"],
        kind="access",
        lifetime=timedelta(seconds=60),
    )
    assert await me_status(gateway, fresh) == 200  # the session itself is fine
    async with gateway.client() as client:
        assert_error(await client.get("/api/users/me", headers=bearer(expired)), 401)
        expired_refresh, _ = gateway.state.tokens.encode(
            user_id=account.user_id,
            username=account.username,
            role="user",
            session_id=claims["sid"],
            kind="refresh",
            lifetime=timedelta(seconds=-60),
        )
        response = await client.post("/api/auth/refresh", json={"refresh_token": expired_refresh})
        assert_error(response, 401)


async def test_expired_session_is_401(gateway: Gateway) -> None:
    account = await gateway.account()
    tokens = await tokens_for(gateway, account.username)
    sid = unverified(tokens["access_token"])["sid"]
    async with gateway.state.sessionmaker() as db:
        await db.execute(
            update(AuthSession)
            .where(AuthSession.id == sid)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
        await db.commit()
    assert await me_status(gateway, tokens["access_token"]) == 401
    async with gateway.client() as client:
        response = await client.post(
            "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
    assert_error(response, 401)


async def test_forged_tokens_are_401(gateway: Gateway) -> None:
    account = await gateway.account()
    payload = unverified(account.token)
    admin_payload = {**payload, "role": "admin"}
    forged = {
        "other secret": resign(payload, "another-secret-" + "y" * 40),
        "alg none": jwt.encode(payload, None, algorithm="none"),
        "HS512 with the real secret": resign(payload, TEST_SECRET, "HS512"),
        "wrong audience": resign({**payload, "aud": "someone-else"}, TEST_SECRET),
        "wrong issuer": resign({**payload, "iss": "someone-else"}, TEST_SECRET),
        "no expiry": resign({k: v for k, v in payload.items() if k != "exp"}, TEST_SECRET),
        "tampered role": ".".join(
            [*resign(admin_payload, "x" * 40).split(".")[:2], account.token.split(".")[2]]
        ),
    }
    # The control: re-signing the same payload properly is accepted.
    assert await me_status(gateway, resign(payload, TEST_SECRET)) == 200
    async with gateway.client() as client:
        for name, token in forged.items():
            response = await client.get("/api/users/me", headers=bearer(token))
            assert response.status_code == 401, name
            assert_error(response, 401)


async def test_token_must_match_its_session_owner(gateway: Gateway) -> None:
    """A valid signature is not enough: the session must exist and belong to `sub`."""
    victim = await gateway.account()
    attacker = await gateway.account()
    codec: TokenCodec = gateway.state.tokens
    attacker_sid = unverified(attacker.token)["sid"]
    cases = {
        "victim's id on attacker's session": (victim.user_id, attacker_sid),
        "unknown session": (attacker.user_id, str(uuid.uuid4())),
    }
    for name, (user_id, sid) in cases.items():
        token, _ = codec.encode(
            user_id=user_id, username="x", role="admin", session_id=sid, kind="access",
            lifetime=timedelta(minutes=5),
        )
        assert await me_status(gateway, token) == 401, name


async def test_role_comes_from_the_database_not_the_token(gateway: Gateway) -> None:
    account = await gateway.account()
    sid = unverified(account.token)["sid"]
    token, _ = gateway.state.tokens.encode(
        user_id=account.user_id, username=account.username, role="admin", session_id=sid,
        kind="access", lifetime=timedelta(minutes=5),
    )
    async with gateway.client() as client:
        verify = await client.get("/api/auth/verify", headers=bearer(token))
        admin_list = await client.get("/api/admin/users", headers=bearer(token))
    assert verify.json()["role"] == "user"
    assert_error(admin_list, 403)


async def test_password_change_ends_other_sessions(gateway: Gateway) -> None:
    account = await gateway.account()
    here = await tokens_for(gateway, account.username)
    elsewhere = await tokens_for(gateway, account.username)
    new_password = "a-brand-new-password"
    async with gateway.client() as client:
        response = await client.post(
            "/api/users/me/password",
            json={"current_password": PASSWORD, "new_password": new_password},
            headers=bearer(here["access_token"]),
        )
        assert response.status_code == 204, response.text
        response = await client.post(
            "/api/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]}
        )
        assert_error(response, 401)
    assert await me_status(gateway, elsewhere["access_token"]) == 401
    assert await me_status(gateway, account.token) == 401
    assert_error(await login(gateway, account.username, PASSWORD), 401)
    fresh = await tokens_for(gateway, account.username, new_password)
    assert await me_status(gateway, fresh["access_token"]) == 200


async def test_password_change_needs_the_current_password(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.post(
            "/api/users/me/password",
            json={"current_password": "not-my-password", "new_password": "whatever-new-1"},
            headers=account.headers,
        )
        assert_error(response, 400, "wrong_password")
        response = await client.post(
            "/api/users/me/password",
            json={"current_password": PASSWORD, "new_password": "short"},
            headers=account.headers,
        )
        error = assert_error(response, 400, "invalid_request")
        assert error["param"] == "new_password"
    # Nothing changed.
    assert await me_status(gateway, account.token) == 200
    await tokens_for(gateway, account.username, PASSWORD)


async def test_password_hash_is_upgraded_on_login(gateway: Gateway) -> None:
    """A hash made with weaker parameters than the current ones is re-hashed at login."""
    account = await gateway.account()
    weak = PasswordHasher(time_cost=1, memory_cost=16, parallelism=1).hash(PASSWORD)
    async with gateway.state.sessionmaker() as db:
        await db.execute(update(User).where(User.id == account.user_id).values(password_hash=weak))
        await db.commit()
    await tokens_for(gateway, account.username)
    async with gateway.state.sessionmaker() as db:
        stored = await db.scalar(select(User.password_hash).where(User.id == account.user_id))
    assert stored is not None and stored != weak
    assert passwords.verify_password(stored, PASSWORD)
    assert not passwords.needs_rehash(stored)


async def test_login_does_not_block_the_event_loop(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 with real parameters takes a CPU-bound fraction of a second: it must run off the
    event loop, or every stream on the gateway stalls for that long at each login."""
    monkeypatch.setattr(passwords, "_hasher", REAL_HASHER)
    account = await gateway.account()
    stored = await asyncio.to_thread(REAL_HASHER.hash, PASSWORD)
    started = time.perf_counter()
    await asyncio.to_thread(REAL_HASHER.verify, stored, PASSWORD)
    one_verify = time.perf_counter() - started
    lags: list[float] = []
    stop = asyncio.Event()

    async def watch() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - started - 0.005)

    watcher = asyncio.create_task(watch())
    try:
        await tokens_for(gateway, account.username)
        assert_error(await login(gateway, account.username, "wrong-password"), 401)
    finally:
        stop.set()
        await watcher
    # Blocking the loop would stall it for about one verification each time.
    assert max(lags) < one_verify / 2, (
        f"event loop stalled for {max(lags):.3f}s during login (one verify: {one_verify:.3f}s)"
    )

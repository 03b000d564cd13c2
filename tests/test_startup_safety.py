"""Production safety in create_app: JWT secret checks, and DEVELOPMENT_MODE (auth bypass)
only on loopback, with a warning logged for every request it serves."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from chatgate.app import StartupError, create_app
from chatgate.auth import passwords
from chatgate.settings import Settings
from chatgate.users import service as users
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import PASSWORD, start_gateway

GOOD_SECRET = "g" * 32


@pytest.fixture(autouse=True)
def isolated(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path, embedded_engine=False, **values)


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "no JWT secret"),
        ("change-me", "placeholder"),
        ("CHANGE-ME", "placeholder"),
        ("changeme", "placeholder"),
        ("secret", "placeholder"),
        ("x" * 31, "shorter than 32 bytes"),
        ("é" * 15, "shorter than 32 bytes"),
    ],
)
def test_refuses_unsafe_secrets(tmp_path: Path, secret: str | None, reason: str) -> None:
    with pytest.raises(StartupError) as caught:
        create_app(settings(tmp_path, jwt_secret=secret))
    assert reason in str(caught.value)
    assert "CHATGATE_JWT_SECRET" in str(caught.value)


@pytest.mark.parametrize("secret", ["x" * 32, "é" * 16, "a-long-random-" + "z" * 40])
def test_accepts_strong_secrets(tmp_path: Path, secret: str) -> None:
    app = create_app(settings(tmp_path, jwt_secret=secret))
    assert app.state.settings.jwt_secret.get_secret_value() == secret


def test_secret_file_in_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text(GOOD_SECRET + "\n")
    app = create_app(settings(tmp_path))
    assert app.state.settings.jwt_secret.get_secret_value() == GOOD_SECRET
    (tmp_path / "jwt_secret").write_text("too-short\n")
    with pytest.raises(StartupError, match="shorter than 32 bytes"):
        create_app(settings(tmp_path))
    # A configured secret wins over the file.
    app = create_app(settings(tmp_path, jwt_secret="c" * 40))
    assert app.state.settings.jwt_secret.get_secret_value() == "c" * 40


def test_secret_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATGATE_JWT_SECRET", "change-me")
    monkeypatch.setenv("CHATGATE_DATA_DIR", str(tmp_path))
    with pytest.raises(StartupError, match="placeholder"):
        create_app()
    monkeypatch.setenv("CHATGATE_JWT_SECRET", GOOD_SECRET)
    create_app()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", "10.1.2.3"])
def test_development_mode_refuses_non_loopback(tmp_path: Path, host: str) -> None:
    with pytest.raises(StartupError, match="loopback"):
        create_app(settings(tmp_path, development_mode=True, host=host, jwt_secret=GOOD_SECRET))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]"])
def test_development_mode_on_loopback(tmp_path: Path, host: str) -> None:
    # Development mode may even run without a configured secret.
    create_app(settings(tmp_path, development_mode=True, host=host))
    create_app(settings(tmp_path, development_mode=True, host=host, jwt_secret="change-me"))


def test_production_on_any_host(tmp_path: Path) -> None:
    create_app(settings(tmp_path, host="0.0.0.0", jwt_secret=GOOD_SECRET))


def dev_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record for record in caplog.records
        if record.levelno == logging.WARNING and "DEVELOPMENT_MODE" in record.getMessage()
    ]


async def test_development_mode_serves_unauthenticated_requests_as_admin(
    tmp_path: Path,
    database_url: str,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    caplog.set_level(logging.WARNING, logger="chatgate")
    config = gateway_settings(tmp_path, database_url, upstream, development_mode=True)
    async with start_gateway(config, upstream) as gateway:
        async with gateway.state.sessionmaker() as db:
            # The first user is not an admin, and a disabled admin does not count.
            await users.create_user(db, "dev-user", PASSWORD)
            disabled = await users.create_user(db, "dev-old-admin", PASSWORD, role="admin")
            await users.set_disabled(db, disabled, True)
            async with gateway.client() as client:
                response = await client.get("/api/users/me")
                assert response.status_code == 401  # no enabled admin yet
            admin = await users.create_user(db, "dev-admin", PASSWORD, role="admin")
        caplog.clear()
        async with gateway.client() as client:
            me = await client.get("/api/users/me")
            listing = await client.get("/api/admin/users")
            assert len(dev_warnings(caplog)) == 2
            messages = [record.getMessage() for record in dev_warnings(caplog)]
            assert "/api/users/me" in messages[0] and "/api/admin/users" in messages[1]

            # Credentials that are presented are still checked: no silent fallback to admin.
            bad = await client.get(
                "/api/users/me", headers={"Authorization": "Bearer not-a-token"}
            )
            token = (await client.post(
                "/api/auth/login", json={"username": "dev-user", "password": PASSWORD}
            )).json()["access_token"]
            as_user = await client.get(
                "/api/users/me", headers={"Authorization": f"Bearer {token}"}
            )
            as_user_admin = await client.get(
                "/api/admin/users", headers={"Authorization": f"Bearer {token}"}
            )
            assert len(dev_warnings(caplog)) == 2  # authenticated requests log nothing
    assert me.status_code == 200
    assert me.json()["id"] == admin.id and me.json()["role"] == "admin"
    assert listing.status_code == 200
    assert bad.status_code == 401
    assert as_user.json()["username"] == "dev-user"
    assert as_user_admin.status_code == 403


async def test_production_mode_has_no_bypass(
    tmp_path: Path,
    database_url: str,
    upstream: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
    caplog.set_level(logging.WARNING, logger="chatgate")
    config = gateway_settings(tmp_path, database_url, upstream)
    async with start_gateway(config, upstream) as gateway:
        async with gateway.state.sessionmaker() as db:
            await users.create_user(db, "prod-admin", PASSWORD, role="admin")
        async with gateway.client() as client:
            me = await client.get("/api/users/me")
            admin = await client.get("/api/admin/users")
    assert me.status_code == 401 and admin.status_code == 401
    assert me.headers["www-authenticate"] == "Bearer"
    assert dev_warnings(caplog) == []

"""`chatgate users|keys|db|config` against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from chatgate.cli.main import app
from chatgate.db.models import ApiKey, User
from chatgate.db.session import make_engine, make_sessionmaker


def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.output


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str, clean_env: None) -> dict[str, str]:
    return {"CHATGATE_DATA_DIR": str(tmp_path / "data"), "CHATGATE_DATABASE_URL": database_url}


async def cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    # The commands run their own event loop, so they run in a worker thread here.
    return await asyncio.to_thread(run_cli, env, *args)


async def users_in(database_url: str) -> dict[str, User]:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            return {u.username: u for u in (await db.scalars(select(User))).all()}
    finally:
        await engine.dispose()


async def test_user_lifecycle(cli_env: dict[str, str], database_url: str) -> None:
    code, out = await cli(cli_env, "users", "add", "alice", "--password", "alice-pass-1")
    assert code == 0 and "created user 'alice'" in out
    code, out = await cli(cli_env, "users", "add", "root2", "--role", "admin")
    assert code == 0 and "password: " in out, "a generated password is printed once"
    code, out = await cli(cli_env, "users", "add", "alice", "--password", "alice-pass-1")
    assert code == 1 and "already exists" in out
    code, out = await cli(cli_env, "users", "add", "shorty", "--password", "short")
    assert code == 1

    code, out = await cli(cli_env, "users", "list")
    assert code == 0 and "alice" in out and "root2" in out and "admin" in out

    before = (await users_in(database_url))["alice"].password_hash
    code, _ = await cli(cli_env, "users", "passwd", "alice", "--password", "alice-pass-2")
    assert code == 0
    after = (await users_in(database_url))["alice"]
    assert after.password_hash != before and after.password_hash.startswith("$argon2id$")

    assert (await cli(cli_env, "users", "disable", "alice"))[0] == 0
    assert (await users_in(database_url))["alice"].disabled
    assert (await cli(cli_env, "users", "disable", "alice", "--enable"))[0] == 0
    assert not (await users_in(database_url))["alice"].disabled
    code, out = await cli(cli_env, "users", "disable", "nobody")
    assert code == 1 and "not found" in out


async def test_keys_create_list_revoke(cli_env: dict[str, str], database_url: str) -> None:
    await cli(cli_env, "users", "add", "bob", "--password", "bob-password")
    code, key = await cli(cli_env, "keys", "create", "--user", "bob", "--name", "laptop")
    key = key.strip()
    assert code == 0 and key.startswith("sk-cg-")
    code, listing = await cli(cli_env, "keys", "list", "--user", "bob")
    assert code == 0 and "laptop" in listing and key[:12] in listing and key not in listing
    engine = make_engine(database_url)
    async with make_sessionmaker(engine)() as db:
        row = (await db.scalars(select(ApiKey))).one()
    await engine.dispose()
    assert key not in (row.key_hash, row.prefix)
    code, _ = await cli(cli_env, "keys", "revoke", str(row.id), "--user", "bob")
    assert code == 0
    assert "revoked" in (await cli(cli_env, "keys", "list", "--user", "bob"))[1]


async def test_db_upgrade_and_config_show(cli_env: dict[str, str]) -> None:
    code, out = await cli(cli_env, "db", "upgrade")
    assert code == 0 and "database at head" in out
    env = {**cli_env, "CHATGATE_JWT_SECRET": "s3cret-value-that-is-long-enough-1234",
           "CHATGATE_ADMIN_PASSWORD": "admin-secret-pw"}
    code, out = await cli(env, "config", "show")
    assert code == 0
    shown = json.loads(out)
    assert shown["jwt_secret"] == "********" and shown["admin_password"] == "********"
    assert "s3cret" not in out and "admin-secret-pw" not in out

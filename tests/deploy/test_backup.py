"""``chatgate backup`` of a running gateway restores into a fresh place with the same rows.

The CLI runs as a separate process while the gateway keeps serving (SQLite: online backup API;
PostgreSQL: pg_dump/pg_restore, when the client tools and the server are present).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import sys
import tarfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import typer
from typer.testing import CliRunner

from chatgate.cli.backup import backup_app
from chatgate.db import migrate
from tests.conftest import (
    PG_HOST,
    PG_PORT,
    create_pg_database,
    drop_pg_database,
    gateway_settings,
)
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Gateway, missing, start_gateway

TABLES = {
    "conversations": "id",
    "messages": "id",
    "requests": "id",
    "users": "id",
}
CLI = "from chatgate.cli.backup import backup_app; backup_app()"


async def run_cli(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLI, *args,
        env={**clean, **env}, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode()


async def make_traffic(gw: Gateway) -> None:
    account = await gw.account()
    for text in ("first question", "second question"):
        events, response = await gw.chat(account, message=text)
        assert response.status_code == 200, response.text
    async with gw.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            headers=account.key_headers,
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert response.status_code == 200, response.text


def sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
            for table, key in TABLES.items()
        }
    finally:
        conn.close()


async def pg_rows(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            table: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY {key}")]
            for table, key in TABLES.items()
        }
    finally:
        await conn.close()


async def test_sqlite_backup_of_running_gateway_restores_identically(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    live = tmp_path / "live"
    live.mkdir()
    db = live / "chatgate.db"
    url = f"sqlite+aiosqlite:///{db}"
    await migrate.upgrade_async(url)
    (live / "jwt_secret").write_text("s" * 48)
    archive = tmp_path / "out" / "backup.tar.gz"
    settings = gateway_settings(live, url, upstream)
    async with start_gateway(settings, upstream) as gw:
        await make_traffic(gw)
        env = {"CHATGATE_DATA_DIR": str(live)}
        code, output = await run_cli(env, tmp_path, "backup", "--out", str(archive))
        assert code == 0, output
        # the instance still serves after (and during) the backup
        async with gw.client() as client:
            assert (await client.get("/health")).status_code == 200
        expected = sqlite_rows(db)

    assert archive.stat().st_mode & 0o077 == 0, "the archive holds the JWT secret"
    with tarfile.open(archive) as tar:
        assert {"manifest.json", "chatgate.db", "jwt_secret"} <= set(tar.getnames())

    fresh = tmp_path / "fresh"
    code, output = await run_cli({}, tmp_path, "restore", str(archive), "--data-dir", str(fresh))
    assert code == 0, output
    restored = sqlite_rows(fresh / "chatgate.db")
    assert restored == expected
    assert len(restored["conversations"]) == 2
    assert len(restored["requests"]) == 3
    assert (fresh / "jwt_secret").read_text() == "s" * 48
    assert (fresh / "jwt_secret").stat().st_mode & 0o077 == 0

    # an existing database is never overwritten without --force
    code, output = await run_cli({}, tmp_path, "restore", str(archive), "--data-dir", str(fresh))
    assert code == 1 and "--force" in output
    code, output = await run_cli(
        {}, tmp_path, "restore", str(archive), "--data-dir", str(fresh), "--force"
    )
    assert code == 0, output
    assert sqlite_rows(fresh / "chatgate.db") == expected


def test_restore_rejects_a_file_that_is_not_a_backup(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not a tarball")
    result = CliRunner().invoke(
        backup_app, ["restore", str(bogus), "--data-dir", str(tmp_path / "d")]
    )
    assert result.exit_code == 1
    assert not (tmp_path / "d" / "chatgate.db").exists()


def test_commands_merge_into_the_main_cli() -> None:
    """Registered with ``app.add_typer(backup_app)``: top-level ``backup`` and ``restore``."""
    root = typer.Typer()

    @root.command()
    def other() -> None:
        """Another command."""

    root.add_typer(backup_app)
    result = CliRunner().invoke(root, ["--help"])
    assert result.exit_code == 0
    assert "backup" in result.output and "restore" in result.output


def test_postgres_without_pg_dump_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump here
    monkeypatch.setenv("CHATGATE_DATABASE_URL", "postgresql+asyncpg://u:pw@db:5432/chatgate")
    monkeypatch.setenv("CHATGATE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(backup_app, ["backup", "--out", str(tmp_path / "x.tar.gz")])
    assert result.exit_code == 1
    assert "pg_dump --format=custom" in result.output
    assert "pw" not in result.output


@pytest.mark.postgres
async def test_postgres_backup_with_pg_dump_restores_identically(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    tools = [t for t in ("pg_dump", "pg_restore") if shutil.which(t) is None]
    if tools:
        missing(f"{', '.join(tools)} not on PATH (Debian: apt-get install postgresql-client)")
    source = await create_pg_database()
    target = await create_pg_database()
    base = f"postgresql://postgres@{PG_HOST}:{PG_PORT}"
    try:
        url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{source}"
        await migrate.upgrade_async(url)
        archive = tmp_path / "pg.tar.gz"
        (tmp_path / "jwt_secret").write_text("p" * 48)
        async with start_gateway(gateway_settings(tmp_path, url, upstream), upstream) as gw:
            await make_traffic(gw)
            env = {"CHATGATE_DATA_DIR": str(tmp_path), "CHATGATE_DATABASE_URL": url}
            code, output = await run_cli(env, tmp_path, "backup", "--out", str(archive))
            assert code == 0, output
            expected = await pg_rows(f"{base}/{source}")
        target_url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{target}"
        env = {"CHATGATE_DATA_DIR": str(tmp_path / "new"), "CHATGATE_DATABASE_URL": target_url}
        code, output = await run_cli(env, tmp_path, "restore", str(archive))
        assert code == 0, output
        assert await pg_rows(f"{base}/{target}") == expected
        assert len(expected["requests"]) == 3
        code, output = await run_cli(env, tmp_path, "restore", str(archive))
        assert code == 1 and "--force" in output
    finally:
        await drop_pg_database(source)
        await drop_pg_database(target)

"""``chatgate usage export`` on SQLite and PostgreSQL: CSV and JSON lines, filters, and
the same bytes as the ``/api/usage.csv`` download."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import insert
from typer.testing import CliRunner

from chatgate.cli.main import app
from chatgate.db.models import RequestLog, User
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.usage import queries
from chatgate.usage.queries import UsageFilter
from chatgate.usage.router import csv_chunks

START = datetime(2024, 2, 1, 22, 0, tzinfo=UTC)


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str, clean_env: None) -> dict[str, str]:
    return {"CHATGATE_DATA_DIR": str(tmp_path / "data"), "CHATGATE_DATABASE_URL": database_url}


def _invoke(env: dict[str, str], args: list[str]) -> Result:
    return CliRunner().invoke(app, args, env=env)


async def export(env: dict[str, str], *args: str) -> Result:
    """``chatgate usage export ARGS`` (in a worker thread: it runs its own event loop)."""
    return await asyncio.to_thread(_invoke, env, ["usage", "export", *args])


async def seed(database_url: str) -> dict[str, list[dict[str, Any]]]:
    """Two users (and one row without a user), rows over two UTC days."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            alice = User(username="alice", password_hash="x", role="user")
            bob = User(username="bob", password_hash="x", role="user")
            db.add_all([alice, bob])
            await db.flush()
            rows = {
                "alice": [_row(alice.id, i, "small") for i in range(0, 6)],
                "bob": [_row(bob.id, i, "big") for i in range(6, 9)],
                "nobody": [_row(None, 9, "=cmd()")],
            }
            await db.execute(insert(RequestLog), [r for group in rows.values() for r in group])
            await db.commit()
        return rows
    finally:
        await engine.dispose()


def _row(user_id: int | None, i: int, model: str) -> dict[str, Any]:
    return {
        "request_id": f"cli-{i}-{uuid.uuid4().hex[:8]}",
        "user_id": user_id,
        "route": "chat" if i % 2 else "v1.chat",
        "status": "error" if i == 3 else "ok",
        "status_code": 502 if i == 3 else 200,
        "model": model,
        "prompt_tokens": i,
        "completion_tokens": 2 * i,
        "ttft_ms": None if i == 4 else 1.5 * i,
        "latency_ms": 10.0 * i,
        "error": "-boom" if i == 3 else None,
        "created_at": START + timedelta(hours=i),  # 22:00 on Feb 1 … 07:00 on Feb 2
    }


def request_ids(rows: list[dict[str, Any]]) -> set[str]:
    return {row["request_id"] for row in rows}


def parse_csv(text: str) -> list[dict[str, str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader)
    assert tuple(header) == queries.FIELDS
    return [dict(zip(header, line, strict=True)) for line in reader]


async def api_csv(database_url: str, flt: UsageFilter) -> bytes:
    engine = make_engine(database_url)
    try:
        return b"".join([chunk async for chunk in csv_chunks(make_sessionmaker(engine), flt)])
    finally:
        await engine.dispose()


async def test_export_csv_file_matches_the_download(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    rows = await seed(database_url)
    out = tmp_path / "usage.csv"
    result = await export(cli_env, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "exported 10 usage rows" in result.stderr
    assert out.read_bytes() == await api_csv(database_url, UsageFilter())
    parsed = parse_csv(out.read_text(encoding="utf-8"))
    assert {p["request_id"] for p in parsed} == request_ids(
        rows["alice"] + rows["bob"] + rows["nobody"]
    )
    assert [p["created_at"] for p in parsed] == sorted(
        (p["created_at"] for p in parsed), reverse=True
    )
    by_user = {p["request_id"]: p["username"] for p in parsed}
    assert by_user[rows["bob"][0]["request_id"]] == "bob"
    errored = next(p for p in parsed if p["status"] == "error")
    assert errored["error"] == "'-boom" and errored["total_tokens"] == "9"
    assert next(p for p in parsed if p["username"] == "")["model"] == "'=cmd()"


async def test_export_jsonl_to_stdout_with_filters(
    cli_env: dict[str, str], database_url: str
) -> None:
    rows = await seed(database_url)
    result = await export(cli_env, "--format", "jsonl", "--user", "alice")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["request_id"] for line in lines] == [
        r["request_id"] for r in reversed(rows["alice"])
    ]
    first = lines[-1]
    assert set(first) == set(queries.FIELDS)
    assert first["username"] == "alice" and first["created_at"] == START.isoformat()
    assert first["ttft_ms"] == 0.0 and first["total_tokens"] == 0
    assert lines[0]["total_tokens"] == 15 and lines[1]["ttft_ms"] is None
    assert next(line for line in lines if line["status"] == "error")["error"] == "-boom"

    # A half-open UTC range given with another zone, and a model filter.
    result = await export(
        cli_env,
        "--format", "jsonl",
        "--since", "2024-02-02T01:00:00+01:00",  # midnight UTC
        "--until", "2024-02-02T03:00:00",
        "--model", "small",
    )
    assert result.exit_code == 0, result.output
    got = [json.loads(line)["request_id"] for line in result.stdout.splitlines()]
    assert got == [rows["alice"][i]["request_id"] for i in (4, 3, 2)]

    result = await export(cli_env, "--status", "error", "--out", "-")
    assert result.exit_code == 0, result.output
    assert [p["request_id"] for p in parse_csv(result.stdout)] == [rows["alice"][3]["request_id"]]


async def test_export_errors(cli_env: dict[str, str], database_url: str) -> None:
    await seed(database_url)
    result = await export(cli_env, "--user", "nobody-here")
    assert result.exit_code == 1 and "not found" in result.stderr
    result = await export(cli_env, "--since", "last week")
    assert result.exit_code == 2 and "ISO 8601" in result.output
    result = await export(cli_env, "--since", "2024-02-02", "--until", "2024-02-01")
    assert result.exit_code == 1 and "earlier" in result.stderr
    result = await export(cli_env, "--format", "xml")
    assert result.exit_code == 2
    result = await export(cli_env, "--status", "fine")
    assert result.exit_code == 2

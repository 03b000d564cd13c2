"""Alembic migrations on fresh SQLite and PostgreSQL databases: schema, search objects,
idempotence, downgrade, agreement with the models, and the SQLite FTS triggers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, inspect, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chatgate.conversations import service as conversations
from chatgate.db import migrate
from chatgate.db.models import Base, Conversation, Message, User
from chatgate.db.session import make_engine, make_sessionmaker

APP_TABLES = {"users", "auth_sessions", "api_keys", "conversations", "messages", "requests"}
SQLITE_FTS = {
    ("table", "messages_fts"),
    ("table", "conversations_fts"),
    ("trigger", "messages_fts_ai"),
    ("trigger", "messages_fts_ad"),
    ("trigger", "messages_fts_au"),
    ("trigger", "conversations_fts_ai"),
    ("trigger", "conversations_fts_ad"),
    ("trigger", "conversations_fts_au"),
}
PG_SEARCH_INDEXES = {"ix_messages_content_tsv", "ix_conversations_title_tsv"}


def head_revision(url: str) -> str:
    head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
    assert head is not None
    return head


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[AsyncConnection]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


@asynccontextmanager
async def session(url: str) -> AsyncIterator[AsyncSession]:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as db:
            yield db
    finally:
        await engine.dispose()


async def snapshot(url: str) -> dict[str, Any]:
    """Everything about the schema that a migration could change."""

    def reflect(sync: Connection) -> dict[str, Any]:
        inspector = inspect(sync)
        tables: dict[str, Any] = {}
        for name in sorted(inspector.get_table_names()):
            tables[name] = {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"])
                    for c in inspector.get_columns(name)
                ],
                "indexes": sorted(
                    (i["name"] or "", tuple(str(c) for c in i["column_names"]), bool(i["unique"]))
                    for i in inspector.get_indexes(name)
                ),
                "fks": sorted(
                    (f["name"] or "", tuple(f["constrained_columns"]), f["referred_table"])
                    for f in inspector.get_foreign_keys(name)
                ),
            }
        return tables

    async with connect(url) as conn:
        tables = await conn.run_sync(reflect)
        if url.startswith("sqlite"):
            objects = (await conn.execute(
                text("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
            )).all()
        else:
            objects = (await conn.execute(text(
                "SELECT 'index', indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = 'public' ORDER BY indexname"
            ))).all()
        version = (
            (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            if "alembic_version" in tables
            else None
        )
    return {"tables": tables, "objects": [tuple(row) for row in objects], "version": version}


def search_objects(snap: dict[str, Any], url: str) -> set[tuple[str, str]]:
    names = {(kind, name) for kind, name, _ in snap["objects"]}
    if url.startswith("sqlite"):
        return names & SQLITE_FTS
    return {(kind, name) for kind, name in names if name in PG_SEARCH_INDEXES}


def expected_search_objects(url: str) -> set[tuple[str, str]]:
    if url.startswith("sqlite"):
        return SQLITE_FTS
    return {("index", name) for name in PG_SEARCH_INDEXES}


async def downgrade(url: str, revision: str = "base") -> None:
    # env.py calls asyncio.run(), so Alembic runs in a thread of its own.
    await asyncio.to_thread(command.downgrade, migrate.alembic_config(url), revision)


async def test_upgrade_creates_every_table_and_the_search_objects(database_url: str) -> None:
    snap = await snapshot(database_url)
    assert APP_TABLES <= set(snap["tables"])
    assert snap["version"] == [head_revision(database_url)]
    assert search_objects(snap, database_url) == expected_search_objects(database_url)
    columns = {name for name, _, _ in snap["tables"]["api_keys"]["columns"]}
    assert {"key_hash", "prefix", "scopes", "limits", "expires_at", "revoked_at"} <= columns
    assert "key" not in columns
    messages = {name for name, _, _ in snap["tables"]["messages"]["columns"]}
    assert {"conversation_id", "parent_id", "role", "content", "status"} <= messages


async def test_upgrade_twice_is_a_no_op(database_url: str) -> None:
    before = await snapshot(database_url)
    await migrate.upgrade_async(database_url)
    assert await snapshot(database_url) == before


async def test_models_match_the_migrations(database_url: str) -> None:
    """Autogenerate finds nothing to do: the migration builds exactly what the models say."""

    def diff(sync: Connection) -> list[Any]:
        context = MigrationContext.configure(sync, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    def is_search_object(entry: Any) -> bool:
        # FTS5 tables and expression indexes live only in the migration, by design.
        if isinstance(entry, tuple) and entry[0] in ("remove_table", "remove_index"):
            name = str(entry[1].name)
            return "_fts" in name or name in PG_SEARCH_INDEXES
        return False

    async with connect(database_url) as conn:
        differences = [entry for entry in await conn.run_sync(diff) if not is_search_object(entry)]
    assert differences == []


async def test_downgrade_to_base_and_back(database_url: str) -> None:
    await downgrade(database_url)
    snap = await snapshot(database_url)
    assert not APP_TABLES & set(snap["tables"])
    assert search_objects(snap, database_url) == set()
    assert snap["version"] == []
    await migrate.upgrade_async(database_url)
    snap = await snapshot(database_url)
    assert APP_TABLES <= set(snap["tables"])
    assert search_objects(snap, database_url) == expected_search_objects(database_url)
    # The rebuilt schema works, search included.
    async with session(database_url) as db:
        user = User(username="after-downgrade", password_hash="x", settings={})
        db.add(user)
        await db.flush()
        conversation = await conversations.create(db, user.id, title="Phoenix rising")
        db.add(Message(conversation_id=conversation.id, role="user", content="ashes to ashes"))
        await db.commit()
        for query in ("phoenix", "ashes"):
            rows, _ = await conversations.list_page(db, user.id, query=query)
            assert [row.id for row in rows] == [conversation.id], query


async def add_conversation(db: AsyncSession, user_id: int, title: str, *texts: str) -> str:
    conversation = await conversations.create(db, user_id, title=title)
    for content in texts:
        db.add(Message(conversation_id=conversation.id, role="user", content=content))
    await db.commit()
    return conversation.id


async def found(db: AsyncSession, user_id: int, query: str) -> set[str]:
    rows, _ = await conversations.list_page(db, user_id, query=query, limit=100)
    return {row.id for row in rows}


async def test_search_index_follows_inserts_updates_and_deletes(database_url: str) -> None:
    """Triggers (SQLite) / expression indexes (PostgreSQL) keep search in step with the rows."""
    async with session(database_url) as db:
        user = User(username="indexer", password_hash="x", settings={})
        db.add(user)
        await db.commit()
        keep = await add_conversation(db, user.id, "Alpha title", "bravo content", "charlie")
        gone = await add_conversation(db, user.id, "Delta title", "echo content")
        edited = await add_conversation(db, user.id, "Foxtrot title", "golf content")
        assert await found(db, user.id, "alpha") == {keep}
        assert await found(db, user.id, "content") == {keep, gone, edited}

        await db.execute(
            update(Message).where(Message.conversation_id == edited).values(content="hotel text")
        )
        await db.execute(
            update(Conversation).where(Conversation.id == edited).values(title="India title")
        )
        await db.commit()
        victim = await db.get(Conversation, gone)
        assert victim is not None
        await conversations.remove(db, victim)
        await db.execute(delete(Message).where(Message.content == "charlie"))
        await db.commit()

        assert await found(db, user.id, "golf") == set()
        assert await found(db, user.id, "foxtrot") == set()
        assert await found(db, user.id, "hotel") == {edited}
        assert await found(db, user.id, "india") == {edited}
        assert await found(db, user.id, "echo") == set()
        assert await found(db, user.id, "delta") == set()
        assert await found(db, user.id, "charlie") == set()
        assert await found(db, user.id, "content") == {keep}

        if database_url.startswith("sqlite"):
            for table in ("messages_fts", "conversations_fts"):
                # Raises if the external-content index disagrees with its table.
                await db.execute(text(f"INSERT INTO {table}({table}) VALUES ('integrity-check')"))
            await db.commit()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_search_survives_vacuum(database_url: str) -> None:
    """conversations_fts keys on conversations.rowid, which VACUUM must not reshuffle."""
    async with session(database_url) as db:
        user = User(username="vacuum", password_hash="x", settings={})
        db.add(user)
        await db.commit()
        ids = [await add_conversation(db, user.id, f"t{i}x common") for i in range(12)]
        for conversation_id in ids[:6:2]:
            row = await db.get(Conversation, conversation_id)
            assert row is not None
            await conversations.remove(db, row)
    async with aiosqlite.connect(database_url.split("///", 1)[1]) as raw:
        await raw.execute("VACUUM")
    async with session(database_url) as db:
        survivors = set(ids) - set(ids[:6:2])
        assert await found(db, user.id, "common") == survivors
        for i, conversation_id in enumerate(ids):
            expected = {conversation_id} if conversation_id in survivors else set()
            assert await found(db, user.id, f"t{i}x") == expected
        for table in ("messages_fts", "conversations_fts"):
            await db.execute(text(f"INSERT INTO {table}({table}) VALUES ('integrity-check')"))


async def test_migrations_are_not_run_on_import(database_url: str) -> None:
    """Importing the app and building it touches no database (migrations run from the CLI)."""
    await downgrade(database_url)
    from chatgate.app import create_app
    from chatgate.settings import Settings

    create_app(Settings(database_url=database_url, jwt_secret="k" * 40, embedded_engine=False))
    snap = await snapshot(database_url)
    assert not APP_TABLES & set(snap["tables"])

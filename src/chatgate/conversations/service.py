"""Conversation storage. Every query is scoped to its owner (no IDOR: others get 404)."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.conversations.schemas import ConversationImport
from chatgate.db.models import Conversation, Message, utcnow
from chatgate.errors import APIError, not_found

MAX_PAGE = 100
MAX_TERMS = 16
# Letters and digits only: "_" and punctuation separate words in both FTS5 and tsvector.
_TERM = re.compile(r"[^\W_]+")
_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")


async def get_owned(db: AsyncSession, user_id: int, conversation_id: str) -> Conversation:
    conversation = await db.scalar(
        select(Conversation).where(
            Conversation.id == conversation_id, Conversation.user_id == user_id
        )
    )
    if conversation is None:
        raise not_found("Conversation")
    return conversation


async def create(
    db: AsyncSession,
    user_id: int,
    *,
    title: str | None = None,
    model: str | None = None,
    system_prompt: str | None = None,
) -> Conversation:
    conversation = Conversation(
        user_id=user_id, title=title or "New chat", model=model, system_prompt=system_prompt
    )
    db.add(conversation)
    await db.flush()
    return conversation


async def messages_of(db: AsyncSession, conversation_id: str) -> list[Message]:
    query = select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
    return list((await db.scalars(query)).all())


def branch_path(messages: list[Message], tip_id: int | None) -> list[Message]:
    """The messages from the first one down to ``tip_id`` along parent links."""
    by_id = {message.id: message for message in messages}
    path: list[Message] = []
    current = by_id.get(tip_id) if tip_id is not None else None
    while current is not None and len(path) <= len(messages):
        path.append(current)
        current = by_id.get(current.parent_id) if current.parent_id is not None else None
    return path[::-1]


def encode_cursor(conversation: Conversation) -> str:
    raw = f"{conversation.updated_at.isoformat()}|{conversation.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, _, conv_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        when = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, "Invalid cursor", "invalid_cursor", param="before") from exc
    if when.tzinfo is None:  # cursors are written in UTC; PostgreSQL would read local time
        when = when.replace(tzinfo=UTC)
    return when, conv_id


async def list_page(
    db: AsyncSession,
    user_id: int,
    *,
    limit: int = 30,
    before: str | None = None,
    query: str | None = None,
    archived: bool = False,
) -> tuple[list[Conversation], str | None]:
    """Most recently updated first; ``before`` is the cursor of the previous page."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt: Select[Conversation] = select(Conversation).where(
        Conversation.user_id == user_id, Conversation.archived.is_(archived)
    )
    if before:
        when, conv_id = decode_cursor(before)
        stmt = stmt.where(
            or_(
                Conversation.updated_at < when,
                and_(Conversation.updated_at == when, Conversation.id < conv_id),
            )
        )
    if query and query.strip():
        condition = search_condition(db.get_bind().dialect.name, query)
        if condition is None:
            return [], None
        stmt = stmt.where(condition)
    stmt = stmt.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(limit + 1)
    rows = list((await db.scalars(stmt)).all())
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def search_terms(query: str) -> list[str]:
    """The letter/digit runs of ``query``: what both full-text tokenizers index as words."""
    return _TERM.findall(query)[:MAX_TERMS]


def postgres_tsquery(query: str) -> str | None:
    """``to_tsquery`` text requiring every whitespace-separated word of ``query`` as a prefix.

    PostgreSQL's parser keeps hosts, file names and versions ("example.com", "v1.2.3") as one
    lexeme, so a word matches either whole, as PostgreSQL parses it, or as all its letter/digit
    runs (the way SQLite's FTS5 tokenizer splits it). Only letter/digit runs are ever written
    unquoted, and the whole word is a quoted literal, so user text cannot inject operators.
    """
    parts = []
    for raw in query.split()[:MAX_TERMS]:
        terms = _TERM.findall(raw)
        if not terms:
            continue
        split = " & ".join(f"{term}:*" for term in terms)
        if terms == [raw]:
            parts.append(split)
        else:
            whole = raw.replace("\\", "\\\\").replace("'", "''")
            parts.append(f"('{whole}':* | ({split}))")
    return " & ".join(parts) or None


def search_condition(dialect: str, query: str) -> ColumnElement[bool] | None:
    """Titles or message text containing every word of ``query`` (as a prefix)."""
    if dialect == "sqlite":
        terms = search_terms(query)
        if not terms:
            return None
        match = " AND ".join(f'"{term}"*' for term in terms)
        in_title = text(
            "conversations.rowid IN "
            "(SELECT rowid FROM conversations_fts WHERE conversations_fts MATCH :fts_q)"
        ).bindparams(fts_q=match)
        in_messages = exists().where(
            Message.conversation_id == Conversation.id,
            text(
                "messages.id IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH :fts_m)"
            ).bindparams(fts_m=match),
        )
        return or_(in_title, in_messages)
    ts_text = postgres_tsquery(query)
    if ts_text is None:
        return None
    tsquery = func.to_tsquery(_SIMPLE, ts_text)
    # The config is a literal, as in the GIN index expressions (a bound parameter there
    # would keep generic plans from using the index).
    title_match = func.to_tsvector(_SIMPLE, Conversation.title).op("@@")(tsquery)
    content_match = exists().where(
        Message.conversation_id == Conversation.id,
        func.to_tsvector(_SIMPLE, Message.content).op("@@")(tsquery),
    )
    return or_(title_match, content_match)


async def apply_changes(
    db: AsyncSession, conversation: Conversation, changes: dict[str, Any]
) -> None:
    for field in ("title", "model", "system_prompt", "archived"):
        if field in changes:
            setattr(conversation, field, changes[field])
    conversation.updated_at = utcnow()
    await db.commit()


async def remove(db: AsyncSession, conversation: Conversation) -> None:
    await db.execute(delete(Message).where(Message.conversation_id == conversation.id))
    await db.delete(conversation)
    await db.commit()


async def import_conversation(db: AsyncSession, user_id: int, data: ConversationImport) -> str:
    conversation = await create(
        db, user_id, title=data.title, model=data.model, system_prompt=data.system_prompt
    )
    parent: int | None = None
    for item in data.messages:
        message = Message(
            conversation_id=conversation.id,
            parent_id=parent,
            role=item.role,
            content=item.content,
            status=item.status,
            model=item.model,
        )
        db.add(message)
        await db.flush()
        parent = message.id
    await db.commit()
    return conversation.id


def export_markdown(conversation: Conversation, messages: list[Message]) -> str:
    lines = [f"# {conversation.title}", ""]
    if conversation.system_prompt:
        lines += ["> System: " + conversation.system_prompt.replace("\n", "\n> "), ""]
    for message in messages:
        who = {"user": "User", "assistant": "Assistant", "system": "System"}[message.role]
        note = "" if message.status == "complete" else f" _({message.status})_"
        lines += [f"**{who}**{note}:", "", message.content, ""]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines.append(f"_Exported from chatgate on {stamp}_")
    return "\n".join(lines) + "\n"

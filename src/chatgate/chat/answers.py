"""A web answer's text in the database while it is written and after its gateway died.

A running generation checkpoints its text every two seconds (one small UPDATE, never
one per token; into the journal while the database is down), so a ``kill -9`` loses at
most the last two seconds of text (``chat/checkpoints.py``). ``checkpoint_at`` doubles as the
generation's lease: a pending answer whose checkpoint is older than the lease has no
live gateway behind it, and any gateway's sweeper ends it as ``interrupted`` with the
text saved so far, billed once under the answer's key. Start-up never ends an answer
that another live gateway is still writing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.db.health import DatabaseHealth, is_outage
from chatgate.db.models import Conversation, Message, utcnow
from chatgate.engines.upstream.stream import estimate_text_tokens
from chatgate.usage.record import UsageRecord
from chatgate.usage.rows import insert_rows

log = logging.getLogger("chatgate.chat")

ORPHANED = "The server stopped during this answer; the text saved until then is kept"
SWEEP_BATCH = 200


def record_key(message_id: int) -> str:
    """The usage row of a web answer is keyed by its message: billed once, whoever ends it."""
    return f"message:{message_id}"


@dataclass(frozen=True)
class FinalAnswer:
    """What a finished generation saves (also journaled when the database is down)."""

    message_id: int
    conversation_id: str
    content: str
    status: str  # complete | interrupted | error
    token_in: int
    token_out: int
    finish_reason: str | None
    error: str | None

    def values(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "status": self.status,
            "token_in": self.token_in,
            "token_out": self.token_out,
            "finish_reason": self.finish_reason,
            "error": self.error,
        }


async def save_final(db: AsyncSession, answer: FinalAnswer) -> None:
    """The answer's final state (the caller commits); idempotent: the journal may
    replay it."""
    await db.execute(
        update(Message)
        .where(Message.id == answer.message_id)
        .values(**answer.values(), checkpoint_at=None)
    )
    await db.execute(
        update(Conversation)
        .where(Conversation.id == answer.conversation_id)
        .values(updated_at=utcnow())
    )


@dataclass(frozen=True)
class Checkpoint:
    """A running answer's text so far (also journaled when the database is down)."""

    message_id: int
    content: str
    token_in: int
    token_out: int
    at: float  # wall-clock time it was taken: the lease runs from here


async def save_checkpoint(db: AsyncSession, checkpoint: Checkpoint) -> None:
    """Only a pending answer takes it, and only a newer one than it has: a late replay
    never overwrites a final answer or a later checkpoint."""
    at = datetime.fromtimestamp(checkpoint.at, UTC)
    await db.execute(
        update(Message)
        .where(
            Message.id == checkpoint.message_id,
            Message.status == "pending",
            or_(Message.checkpoint_at.is_(None), Message.checkpoint_at < at),
        )
        .values(
            content=checkpoint.content,
            token_in=checkpoint.token_in,
            token_out=checkpoint.token_out,
            checkpoint_at=at,
        )
    )


async def end_orphans(db: AsyncSession, lease_seconds: float) -> list[int]:
    """End pending answers whose checkpoint is older than the lease: ``interrupted``,
    their saved text kept, one usage row each (never replacing a real one); their ids."""
    stale_before: datetime = utcnow() - timedelta(seconds=lease_seconds)
    seen = func.coalesce(Message.checkpoint_at, Message.created_at)
    rows = (
        await db.execute(
            select(Message, Conversation.user_id)
            .join(Conversation, Conversation.id == Message.conversation_id)
            .where(Message.status == "pending", seen < stale_before)
            .order_by(Message.id)
            .limit(SWEEP_BATCH)
            .with_for_update(of=Message, skip_locked=True)
        )
    ).all()
    if not rows:
        return []
    await db.execute(
        update(Message)
        .where(Message.id.in_([m.id for m, _ in rows]), Message.status == "pending")
        .values(status="interrupted", error=ORPHANED, checkpoint_at=None)
    )
    await insert_rows(db, [vars(_orphan_row(m, user_id)) for m, user_id in rows], replace=False)
    await db.commit()
    return [m.id for m, _ in rows]


def _orphan_row(message: Message, user_id: int | None) -> UsageRecord:
    return UsageRecord(
        request_id=message.request_id or record_key(message.id),
        route="chat",
        status="interrupted",
        status_code=503,
        user_id=user_id,
        model=message.model,
        prompt_tokens=message.token_in or 0,
        completion_tokens=message.token_out or estimate_text_tokens(message.content),
        error=ORPHANED,
        record_key=record_key(message.id),
    )


class OrphanSweeper:
    """Every gateway ends answers whose gateway died, every half lease (and at start)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        health: DatabaseHealth,
        lease_seconds: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._health = health
        self._lease = lease_seconds
        self._task: asyncio.Task[None] | None = None
        # With Redis: the ended answers' generations get a terminal event for their readers.
        self.on_ended: Callable[[list[int]], Awaitable[None]] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="orphan-answers")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def sweep(self) -> int:
        try:
            async with self._sessionmaker() as db:
                ended = await end_orphans(db, self._lease)
        except Exception as exc:
            if not is_outage(exc):
                raise
            self._health.failed(exc)
            return 0
        if ended:
            log.warning("ended %d answers whose gateway stopped while writing them", len(ended))
            if self.on_ended is not None:
                await self.on_ended(ended)
        return len(ended)

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:  # the loop must outlive any one bad pass
                log.exception("sweeping orphaned answers failed")
            await asyncio.sleep(self._lease / 2)

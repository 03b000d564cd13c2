"""Read the rated answers a filter selects, each with the branch of its conversation that
led to it, from the database. Only users who opted in (or never chose, where the
deployment's default is in) are read at all."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.conversations.service import branch_path
from chatgate.datasets.filters import DatasetFilter
from chatgate.db.models import Conversation, Message, MessageFeedback, User

CONVERSATION_BATCH = 200
Row = TypeVarTuple("Row")


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True)
class RatedAnswer:
    """A rated answer with its context: the turns before it on its branch."""

    message_id: int
    model: str | None
    rating: str
    answer: str  # the corrected answer where there is one, else the answer as written
    corrected: bool
    context: tuple[Turn, ...]


def consent_condition(default_opt_in: bool) -> ColumnElement[bool]:
    if default_opt_in:
        return or_(User.training_opt_in.is_(None), User.training_opt_in.is_(True))
    return User.training_opt_in.is_(True)


def _rating_condition(flt: DatasetFilter) -> ColumnElement[bool] | None:
    corrected = MessageFeedback.correction.is_not(None)
    return {
        "endorsed": or_(MessageFeedback.rating == "up", corrected),
        "up": MessageFeedback.rating == "up",
        "down": MessageFeedback.rating == "down",
        "corrected": corrected,
        "any": None,
    }[flt.rating]


def _selected(flt: DatasetFilter, columns: Select[*Row]) -> Select[*Row]:
    """``columns`` over the feedback rows the filter selects (consent not yet applied)."""
    query = (
        columns.join(Message, Message.id == MessageFeedback.message_id)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .join(User, User.id == Conversation.user_id)
        # Only the owner's own rating: the owner is the one whose consent counts.
        .where(MessageFeedback.user_id == Conversation.user_id, Message.role == "assistant")
    )
    conditions = [_rating_condition(flt)]
    if flt.model is not None:
        conditions.append(Message.model == flt.model)
    if flt.since is not None:
        conditions.append(Message.created_at >= flt.since)
    if flt.until is not None:
        conditions.append(Message.created_at < flt.until)
    if flt.usernames:
        conditions.append(User.username.in_(flt.usernames))
    present = [condition for condition in conditions if condition is not None]
    return query.where(and_(*present)) if present else query


async def count_opted_out(db: AsyncSession, flt: DatasetFilter, default_opt_in: bool) -> int:
    """How many selected answers were left out because their users opted out."""
    query = _selected(flt, select(func.count(MessageFeedback.id)))
    query = query.where(~consent_condition(default_opt_in))
    return int((await db.execute(query)).one()[0] or 0)


async def rated_answers(
    db: AsyncSession, flt: DatasetFilter, default_opt_in: bool
) -> list[RatedAnswer]:
    query = _selected(flt, select(MessageFeedback.id, Message.conversation_id)).where(
        consent_condition(default_opt_in)
    )
    rows = (await db.execute(query.order_by(MessageFeedback.id))).all()
    by_conversation: dict[str, list[int]] = defaultdict(list)
    for feedback_id, conversation_id in rows:
        by_conversation[conversation_id].append(feedback_id)
    conversation_ids = sorted(by_conversation)
    answers: list[RatedAnswer] = []
    for start in range(0, len(conversation_ids), CONVERSATION_BATCH):
        batch = conversation_ids[start : start + CONVERSATION_BATCH]
        answers += await _answers_in(db, batch, {f for c in batch for f in by_conversation[c]})
    return answers


async def _answers_in(
    db: AsyncSession, conversation_ids: list[str], feedback_ids: set[int]
) -> list[RatedAnswer]:
    found = await db.scalars(select(Conversation).where(Conversation.id.in_(conversation_ids)))
    conversations = {row.id: row for row in found}
    messages: dict[str, list[Message]] = defaultdict(list)
    by_id: dict[int, Message] = {}
    query = select(Message).where(Message.conversation_id.in_(conversation_ids))
    for message in await db.scalars(query.order_by(Message.id)):
        messages[message.conversation_id].append(message)
        by_id[message.id] = message
    feedback = await db.scalars(select(MessageFeedback).where(MessageFeedback.id.in_(feedback_ids)))
    answers = []
    for row in sorted(feedback, key=lambda f: f.id):
        rated = by_id[row.message_id]
        conversation = conversations[rated.conversation_id]
        path = branch_path(messages[rated.conversation_id], rated.id)
        answers.append(_answer(conversation.system_prompt, path, row))
    return answers


def _answer(system_prompt: str | None, path: list[Message], row: MessageFeedback) -> RatedAnswer:
    context = [Turn("system", system_prompt)] if system_prompt and system_prompt.strip() else []
    for message in path[:-1]:
        # Failed answers (an error, nothing said) are not part of what the model saw.
        if message.status == "error" or not message.content.strip():
            continue
        if message.role in ("system", "user", "assistant"):
            context.append(Turn(message.role, message.content))
    rated = path[-1]
    return RatedAnswer(
        message_id=rated.id,
        model=rated.model,
        rating=row.rating,
        answer=row.correction if row.correction is not None else rated.content,
        corrected=row.correction is not None,
        context=tuple(context),
    )

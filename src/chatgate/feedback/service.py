"""Ratings storage. Only the owner of a conversation rates its answers: every lookup goes
through the owner-scoped conversation (others get 404, as in conversations/)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.conversations import service as conversations
from chatgate.db.models import Message, MessageFeedback, User, utcnow
from chatgate.errors import APIError, not_found
from chatgate.feedback.schemas import FeedbackIn, TrainingConsentOut


async def rateable_message(
    db: AsyncSession, user_id: int, conversation_id: str, message_id: int
) -> Message:
    """The user's own finished assistant answer ``message_id`` (404 or 409 otherwise)."""
    conversation = await conversations.get_owned(db, user_id, conversation_id)
    message = await db.scalar(
        select(Message).where(Message.id == message_id, Message.conversation_id == conversation.id)
    )
    if message is None:
        raise not_found("Message")
    if message.role != "assistant" or message.status == "pending":
        # 409: the message exists, but is not (yet) a finished answer.
        raise APIError(
            409, "Only finished assistant answers can be rated", "not_rateable", param="message_id"
        )
    return message


async def _current(db: AsyncSession, message_id: int, user_id: int) -> MessageFeedback | None:
    return await db.scalar(
        select(MessageFeedback).where(
            MessageFeedback.message_id == message_id, MessageFeedback.user_id == user_id
        )
    )


async def set_feedback(
    db: AsyncSession, user_id: int, message: Message, body: FeedbackIn
) -> MessageFeedback:
    """Create or replace the user's rating of ``message`` (a PUT: the last one wins)."""
    correction = body.correction if body.correction and body.correction.strip() else None
    # Read before the loop: a rollback expires the loaded message.
    message_id, model = message.id, message.model
    for _attempt in range(2):  # a concurrent first rating may win the unique index
        row = await _current(db, message_id, user_id)
        if row is None:
            row = MessageFeedback(message_id=message_id, user_id=user_id)
            db.add(row)
        row.rating = body.rating
        row.correction = correction
        row.model = model
        row.updated_at = utcnow()
        try:
            await db.commit()
            return row
        except IntegrityError:
            await db.rollback()
    raise APIError(409, "The rating changed meanwhile; try again", "feedback_conflict")


async def delete_feedback(db: AsyncSession, user_id: int, message_id: int) -> bool:
    result = await db.execute(
        delete(MessageFeedback).where(
            MessageFeedback.message_id == message_id, MessageFeedback.user_id == user_id
        )
    )
    await db.commit()
    return bool(getattr(result, "rowcount", 0))


async def of_conversation(
    db: AsyncSession, user_id: int, conversation_id: str
) -> list[MessageFeedback]:
    conversation = await conversations.get_owned(db, user_id, conversation_id)
    query = (
        select(MessageFeedback)
        .join(Message, Message.id == MessageFeedback.message_id)
        .where(Message.conversation_id == conversation.id, MessageFeedback.user_id == user_id)
        .order_by(MessageFeedback.message_id)
    )
    return list((await db.scalars(query)).all())


def consent_of(user: User, default: bool) -> TrainingConsentOut:
    choice = user.training_opt_in
    return TrainingConsentOut(
        opted_in=default if choice is None else choice, choice=choice, default=default
    )


async def set_consent(db: AsyncSession, user: User, choice: bool | None) -> User:
    user.training_opt_in = choice
    await db.commit()
    return user

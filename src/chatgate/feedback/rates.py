"""Per-model feedback rates for administrators: answers, ratings and corrections over a
period. The model is the id that answered (a fine-tuned version has its own id), so a
version's rates can be compared with its base's."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.db.models import Message, MessageFeedback
from chatgate.feedback.schemas import FeedbackSummary, ModelRates


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def rates_of(model: str | None, answers: int, up: int, down: int, corrected: int) -> ModelRates:
    rated = up + down
    return ModelRates(
        model=model,
        answers=answers,
        rated=rated,
        up=up,
        down=down,
        corrected=corrected,
        up_rate=_share(up, rated),
        down_rate=_share(down, rated),
        rated_share=_share(rated, answers),
    )


async def _answers(
    db: AsyncSession, since: datetime | None, until: datetime | None, model: str | None
) -> dict[str | None, int]:
    query = select(Message.model, func.count()).where(Message.role == "assistant")
    if since is not None:
        query = query.where(Message.created_at >= since)
    if until is not None:
        query = query.where(Message.created_at < until)
    if model is not None:
        query = query.where(Message.model == model)
    rows = (await db.execute(query.group_by(Message.model))).all()
    return {row[0]: int(row[1]) for row in rows}


async def _ratings(
    db: AsyncSession, since: datetime | None, until: datetime | None, model: str | None
) -> dict[str | None, tuple[int, int, int]]:
    """Ratings of the answers written in the period (the same rows ``_answers`` counts)."""
    up = func.sum(case((MessageFeedback.rating == "up", 1), else_=0))
    down = func.sum(case((MessageFeedback.rating == "down", 1), else_=0))
    corrected = func.sum(case((MessageFeedback.correction.is_not(None), 1), else_=0))
    query = select(MessageFeedback.model, up, down, corrected).join(
        Message, Message.id == MessageFeedback.message_id
    )
    if since is not None:
        query = query.where(Message.created_at >= since)
    if until is not None:
        query = query.where(Message.created_at < until)
    if model is not None:
        query = query.where(MessageFeedback.model == model)
    rows = (await db.execute(query.group_by(MessageFeedback.model))).all()
    return {row[0]: (int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)) for row in rows}


async def summarize(
    db: AsyncSession,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
) -> FeedbackSummary:
    """Rates per model id for the answers written in ``[since, until)``, most answers first."""
    answers = await _answers(db, since, until, model)
    ratings = await _ratings(db, since, until, model)
    models = []
    for name in set(answers) | set(ratings):
        up, down, corrected = ratings.get(name, (0, 0, 0))
        models.append(rates_of(name, answers.get(name, 0), up, down, corrected))
    models.sort(key=lambda r: (-r.answers, -r.rated, r.model or ""))
    totals = rates_of(
        None,
        sum(r.answers for r in models),
        sum(r.up for r in models),
        sum(r.down for r in models),
        sum(r.corrected for r in models),
    )
    return FeedbackSummary(since=since, until=until, models=models, totals=totals)

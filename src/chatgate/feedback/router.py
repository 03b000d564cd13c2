"""Feedback routes: rating one's own answers (under ``/api/conversations``, so a key with
the ``chat`` scope may rate), the training opt-in (``/api/users/me``) and the admins'
per-model rates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from chatgate.api_route import GatewayRoute
from chatgate.deps import AdminUser, CurrentUser, DbDep, StateDep
from chatgate.errors import APIError
from chatgate.feedback import rates, service
from chatgate.feedback.schemas import (
    FeedbackIn,
    FeedbackList,
    FeedbackOut,
    FeedbackSummary,
    TrainingConsentIn,
    TrainingConsentOut,
)
from chatgate.openapi_responses import SIGNED_IN, errors
from chatgate.params import RowId
from chatgate.request_body import IsoDateTime
from chatgate.usage.queries import as_utc
from chatgate.users import service as users

router = APIRouter(tags=["feedback"], responses=SIGNED_IN, route_class=GatewayRoute)

FEEDBACK_PATH = "/api/conversations/{conversation_id}/messages/{message_id}/feedback"


@router.put(FEEDBACK_PATH, responses=errors(400, 404, 409, 413))
async def rate_message(
    conversation_id: str, message_id: RowId, body: FeedbackIn, identity: CurrentUser, db: DbDep
) -> FeedbackOut:
    """Rate an answer of your own conversation (replaces an earlier rating)."""
    message = await service.rateable_message(db, identity.user_id, conversation_id, message_id)
    row = await service.set_feedback(db, identity.user_id, message, body)
    return FeedbackOut.model_validate(row)


@router.delete(FEEDBACK_PATH, status_code=204, responses=errors(400, 404, 409))
async def unrate_message(
    conversation_id: str, message_id: RowId, identity: CurrentUser, db: DbDep
) -> Response:
    """Withdraw your rating (204 whether or not there was one)."""
    message = await service.rateable_message(db, identity.user_id, conversation_id, message_id)
    await service.delete_feedback(db, identity.user_id, message.id)
    return Response(status_code=204)


@router.get("/api/conversations/{conversation_id}/feedback", responses=errors(404))
async def conversation_feedback(
    conversation_id: str, identity: CurrentUser, db: DbDep
) -> FeedbackList:
    """Your ratings of the answers in one of your conversations."""
    rows = await service.of_conversation(db, identity.user_id, conversation_id)
    return FeedbackList(feedback=[FeedbackOut.model_validate(row) for row in rows])


@router.get("/api/users/me/training")
async def my_training_consent(
    identity: CurrentUser, db: DbDep, state: StateDep
) -> TrainingConsentOut:
    """Whether your rated conversations may go into training datasets."""
    user = await users.get_user(db, identity.user_id)
    return service.consent_of(user, state.settings.training_default_opt_in)


@router.put("/api/users/me/training", responses=errors(400, 413))
async def set_my_training_consent(
    body: TrainingConsentIn, identity: CurrentUser, db: DbDep, state: StateDep
) -> TrainingConsentOut:
    """Opt in or out of training use (null: the deployment's default)."""
    user = await users.get_user(db, identity.user_id)
    await service.set_consent(db, user, body.opted_in)
    return service.consent_of(user, state.settings.training_default_opt_in)


@router.get("/api/admin/feedback/summary", responses=errors(400))
async def feedback_summary(
    _admin: AdminUser,
    db: DbDep,
    since: Annotated[
        IsoDateTime | None, Query(description="Inclusive; ISO 8601, UTC when no zone is given")
    ] = None,
    until: Annotated[
        IsoDateTime | None, Query(description="Exclusive; ISO 8601, UTC when no zone is given")
    ] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
) -> FeedbackSummary:
    """Answers, thumbs up/down and corrections per model id, for answers in the period."""
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and since >= until:
        raise APIError(400, "'since' must be earlier than 'until'", "invalid_range", param="until")
    return await rates.summarize(db, since, until, model)

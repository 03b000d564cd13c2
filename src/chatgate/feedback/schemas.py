"""Request and response bodies of ``/api/conversations/{id}/…/feedback`` and friends."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chatgate.request_body import RequestBody

Rating = Literal["up", "down"]
MAX_CORRECTION_CHARS = 100_000


class FeedbackIn(RequestBody):
    """A rating; ``correction`` is the answer the user would have wanted (null: none)."""

    rating: Rating
    correction: str | None = Field(default=None, max_length=MAX_CORRECTION_CHARS)


class FeedbackOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    message_id: int
    rating: Rating
    correction: str | None
    model: str | None
    created_at: datetime
    updated_at: datetime


class FeedbackList(BaseModel):
    feedback: list[FeedbackOut]


class ModelRates(BaseModel):
    """One model id's answers and ratings in the period. Rates are shares of the rated
    answers (null when none was rated); ``rated_share`` is rated / answers."""

    model: str | None
    answers: int
    rated: int
    up: int
    down: int
    corrected: int
    up_rate: float | None
    down_rate: float | None
    rated_share: float | None


class FeedbackSummary(BaseModel):
    since: datetime | None
    until: datetime | None
    models: list[ModelRates]
    totals: ModelRates


class TrainingConsentIn(RequestBody):
    """true/false: the user's choice; null: follow the deployment's default again."""

    opted_in: bool | None


class TrainingConsentOut(BaseModel):
    opted_in: bool  # effective: do exports include this user's conversations
    choice: bool | None  # what the user chose (null: never chose)
    default: bool  # the deployment's default (CHATGATE_TRAINING_DEFAULT_OPT_IN)

"""Which rated answers a dataset takes: the filters of ``chatgate dataset export`` and of
``POST /api/admin/datasets``. Users who opted out of training are never a filter choice:
the query always leaves them out (collect.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from chatgate.errors import APIError
from chatgate.usage.queries import as_utc

# endorsed: thumbs up, or any rating with a corrected answer (the answers a person vouched
# for: the default, and what supervised fine-tuning wants). up / down / corrected: only
# those. any: every rated answer (for inspection; a thumbs-down answer without a
# correction is a bad answer, exported as it was).
RatingFilter = Literal["endorsed", "up", "down", "corrected", "any"]
RATINGS: tuple[RatingFilter, ...] = ("endorsed", "up", "down", "corrected", "any")
MAX_HOLDOUT = 0.5


@dataclass(frozen=True)
class DatasetFilter:
    rating: RatingFilter = "endorsed"
    model: str | None = None  # the model id that wrote the answer
    since: datetime | None = None  # answers written at or after (UTC)
    until: datetime | None = None  # … and before
    usernames: tuple[str, ...] = ()  # only these users (still only if opted in)
    min_chars: int = 1  # the (corrected) answer's minimum length in characters
    holdout: float = 0.1  # share of examples held out for evaluation

    def __post_init__(self) -> None:
        object.__setattr__(self, "since", as_utc(self.since))
        object.__setattr__(self, "until", as_utc(self.until))
        if self.since and self.until and self.since >= self.until:
            raise APIError(
                400, "'since' must be earlier than 'until'", "invalid_range", param="until"
            )
        if not 0.0 <= self.holdout <= MAX_HOLDOUT:
            raise APIError(
                400, f"holdout must be 0 to {MAX_HOLDOUT}", "invalid_holdout", param="holdout"
            )
        if self.min_chars < 0:
            raise APIError(
                400, "min_chars must be 0 or more", "invalid_min_chars", param="min_chars"
            )
        if self.rating not in RATINGS:
            raise APIError(
                400, f"rating must be one of {', '.join(RATINGS)}", "invalid_rating", param="rating"
            )

    def describe(self) -> dict[str, Any]:
        """The filters as JSON values, for the dataset's metadata."""
        data = asdict(self)
        data["usernames"] = list(self.usernames)
        for key in ("since", "until"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

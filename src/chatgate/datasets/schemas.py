"""Bodies of ``/api/admin/datasets``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from chatgate.datasets.filters import MAX_HOLDOUT, DatasetFilter, RatingFilter
from chatgate.request_body import CountJsonInt, IsoDateTime, RequestBody


class DatasetRequest(RequestBody):
    """The filters of a new export (all optional; users who opted out are always left out)."""

    rating: RatingFilter = "endorsed"
    model: str | None = Field(default=None, max_length=128)
    since: IsoDateTime | None = None
    until: IsoDateTime | None = None
    usernames: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=1000
    )
    min_chars: Annotated[CountJsonInt, Field(le=1_000_000)] = 1
    holdout: Annotated[float, Field(ge=0.0, le=MAX_HOLDOUT)] = 0.1

    def to_filter(self) -> DatasetFilter:
        return DatasetFilter(
            rating=self.rating,
            model=self.model,
            since=self.since,
            until=self.until,
            usernames=tuple(sorted(set(self.usernames))),
            min_chars=self.min_chars,
            holdout=self.holdout,
        )


class DatasetOut(BaseModel):
    """A dataset's metadata (``metadata.json``)."""

    format: str
    version: str
    hash: str
    created_at: str
    filters: dict[str, Any]
    counts: dict[str, int]
    scrubbed: dict[str, int]
    models: dict[str, int]
    files: dict[str, str]


class DatasetList(BaseModel):
    datasets: list[DatasetOut]

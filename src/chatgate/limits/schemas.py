"""The body of the admin limit routes (PUT .../limits)."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from chatgate.limits.policy import QueuePriority
from chatgate.request_body import CountJsonInt, RequestBody


class LimitChanges(RequestBody):
    """The limits to change (those of ``LimitPolicy``): an omitted field stays as it is,
    null means unlimited, 0 blocks. Any other field is refused."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"requests_per_minute": 60, "tokens_per_day": 200000, "concurrent_streams": None}
            ]
        },
    )

    requests_per_minute: CountJsonInt | None = None
    tokens_per_minute: CountJsonInt | None = None
    concurrent_streams: CountJsonInt | None = None
    tokens_per_day: CountJsonInt | None = None
    tokens_per_month: CountJsonInt | None = None
    queue_weight: Annotated[float, Field(gt=0, le=100)] | None = None
    queue_priority: QueuePriority | None = None

    def changes(self) -> dict[str, object]:
        return self.model_dump(exclude_unset=True)

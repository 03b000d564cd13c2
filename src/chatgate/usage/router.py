"""``/api/usage``: usage rows (own; admins: all), aggregates and a streamed CSV download.

Routes are declared before any ``/api/usage/{…}`` path could shadow ``/api/usage.csv``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.api_route import GatewayRoute
from chatgate.deps import CurrentUser, DbDep, StateDep
from chatgate.openapi_responses import SIGNED_IN, errors
from chatgate.params import RowIdQuery
from chatgate.request_body import IsoDateTime
from chatgate.usage import queries
from chatgate.usage.queries import Cursor, GroupBy, UsageFilter
from chatgate.usage.schemas import UsageGroupOut, UsagePage, UsageRowOut, UsageSummary

router = APIRouter(
    prefix="/api", tags=["usage"], responses={**SIGNED_IN, **errors(400)}, route_class=GatewayRoute
)

Status = Literal["ok", "error", "cancelled", "interrupted", "rejected"]


def usage_filter(
    model: Annotated[str | None, Query(max_length=128)] = None,
    route: Annotated[str | None, Query(max_length=64)] = None,
    status: Status | None = None,
    api_key_id: RowIdQuery = None,
    since: Annotated[
        IsoDateTime | None, Query(description="Inclusive; ISO 8601, UTC when no zone is given")
    ] = None,
    until: Annotated[
        IsoDateTime | None, Query(description="Exclusive; ISO 8601, UTC when no zone is given")
    ] = None,
    user_id: Annotated[RowIdQuery, Query(description="Administrators only")] = None,
    username: Annotated[str | None, Query(max_length=64, description="Administrators only")] = None,
) -> UsageFilter:
    return UsageFilter(
        user_id=user_id,
        username=username,
        api_key_id=api_key_id,
        model=model,
        route=route,
        status=status,
        since=since,
        until=until,
    )


FilterDep = Annotated[UsageFilter, Depends(usage_filter)]


@router.get("/usage.csv", response_class=StreamingResponse)
async def usage_csv(identity: CurrentUser, state: StateDep, flt: FilterDep) -> StreamingResponse:
    """Every matching row as CSV, newest first, streamed in batches."""
    scoped = flt.scoped_to(identity)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    return StreamingResponse(
        csv_chunks(state.sessionmaker, scoped),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="chatgate-usage-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


async def csv_chunks(
    sessionmaker: async_sessionmaker[AsyncSession], flt: UsageFilter
) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(queries.FIELDS)
    yield _drain(buffer)
    async for batch in queries.iter_rows(sessionmaker, flt):
        writer.writerows(queries.csv_values(entry) for entry in batch)
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data


@router.get("/usage")
async def list_usage(
    identity: CurrentUser,
    db: DbDep,
    flt: FilterDep,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 100,
    before: Annotated[str | None, Query(max_length=200)] = None,
) -> UsagePage:
    """Usage rows, newest first: your own, or everyone's for administrators."""
    cursor = Cursor.decode(before) if before else None
    rows, next_cursor = await queries.list_page(
        db, flt.scoped_to(identity), limit=limit, before=cursor
    )
    return UsagePage(
        rows=[UsageRowOut.of(row) for row in rows],
        next_cursor=next_cursor.encode() if next_cursor else None,
    )


@router.get("/usage/summary")
async def usage_summary(
    identity: CurrentUser,
    db: DbDep,
    flt: FilterDep,
    group_by: GroupBy = "day",
) -> UsageSummary:
    """Requests, statuses, tokens and latency per UTC day, model, user or API key."""
    groups = await queries.summarize(db, flt.scoped_to(identity), group_by)
    return UsageSummary(
        group_by=group_by,
        since=flt.since,
        until=flt.until,
        groups=[UsageGroupOut.of(group) for group in groups],
        totals=UsageGroupOut.of(queries.total_of(groups)),
    )

"""The read side of usage accounting: filtered, keyset-paginated rows and aggregates.

Shared by ``/api/usage``, ``/api/usage.csv``, ``/api/usage/summary`` and
``chatgate usage export``. Time ranges are half-open: ``since <= created_at < until``.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    and_,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.auth.identity import Identity
from chatgate.db.models import ApiKey, RequestLog, User
from chatgate.errors import APIError, forbidden

MAX_PAGE = 500
EXPORT_BATCH = 500
GroupBy = Literal["day", "model", "user", "key"]
STATUSES = ("ok", "error", "cancelled", "interrupted", "rejected")

# Columns of one usage row, in export order.
FIELDS = (
    "id",
    "request_id",
    "created_at",
    "user_id",
    "username",
    "api_key_id",
    "api_key_name",
    "route",
    "model",
    "engine",
    "status",
    "status_code",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "ttft_ms",
    "latency_ms",
    "queue_ms",
    "error",
)


def as_utc(value: datetime | None) -> datetime | None:
    """A timestamp without a zone means UTC (PostgreSQL would read it in its own zone)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class UsageFilter:
    user_id: int | None = None
    username: str | None = None
    api_key_id: int | None = None
    model: str | None = None
    route: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "since", as_utc(self.since))
        object.__setattr__(self, "until", as_utc(self.until))
        if self.since and self.until and self.since >= self.until:
            raise APIError(
                400, "'since' must be earlier than 'until'", "invalid_range", param="until"
            )

    def scoped_to(self, identity: Identity) -> UsageFilter:
        """Admins see every row; anyone else only their own (naming another user: 403)."""
        if identity.is_admin:
            return self
        if self.user_id is not None and self.user_id != identity.user_id:
            raise forbidden("Only administrators may read other users' usage")
        if self.username is not None and self.username != identity.username:
            raise forbidden("Only administrators may read other users' usage")
        return dataclasses.replace(self, user_id=identity.user_id, username=None)


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.created_at.isoformat()}|{self.id}"
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            stamp, _, row_id = base64.urlsafe_b64decode(text.encode()).decode().partition("|")
            when = as_utc(datetime.fromisoformat(stamp))
            assert when is not None
            return cls(when, int(row_id))
        except (ValueError, UnicodeDecodeError) as exc:
            raise APIError(400, "Invalid cursor", "invalid_cursor", param="before") from exc


@dataclass(frozen=True)
class UsageEntry:
    id: int
    request_id: str
    created_at: datetime
    user_id: int | None
    username: str | None
    api_key_id: int | None
    api_key_name: str | None
    route: str
    model: str | None
    engine: str | None
    status: str
    status_code: int
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    ttft_ms: float | None
    latency_ms: float
    queue_ms: float | None
    error: str | None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        """The row as plain values, in ``FIELDS`` order (``created_at`` stays a datetime)."""
        return {name: getattr(self, name) for name in FIELDS}


_ROW_COLUMNS = (
    RequestLog.id,
    RequestLog.request_id,
    RequestLog.created_at,
    RequestLog.user_id,
    User.username,
    RequestLog.api_key_id,
    ApiKey.name.label("api_key_name"),
    RequestLog.route,
    RequestLog.model,
    RequestLog.engine,
    RequestLog.status,
    RequestLog.status_code,
    RequestLog.finish_reason,
    RequestLog.prompt_tokens,
    RequestLog.completion_tokens,
    RequestLog.ttft_ms,
    RequestLog.latency_ms,
    RequestLog.queue_ms,
    RequestLog.error,
)


AnySelect = Select[*tuple[Any, ...]]


def _select_joined(*columns: Any) -> AnySelect:
    """``columns`` from usage rows with their user and API key (either may be gone)."""
    return (
        select(*columns)
        .outerjoin(User, User.id == RequestLog.user_id)
        .outerjoin(ApiKey, ApiKey.id == RequestLog.api_key_id)
    )


def _conditions(flt: UsageFilter) -> list[ColumnElement[bool]]:
    checks: list[tuple[Any, Any]] = [
        (flt.user_id, RequestLog.user_id),
        (flt.username, User.username),
        (flt.api_key_id, RequestLog.api_key_id),
        (flt.model, RequestLog.model),
        (flt.route, RequestLog.route),
        (flt.status, RequestLog.status),
    ]
    conditions: list[ColumnElement[bool]] = [
        column == value for value, column in checks if value is not None
    ]
    if flt.since is not None:
        conditions.append(RequestLog.created_at >= flt.since)
    if flt.until is not None:
        conditions.append(RequestLog.created_at < flt.until)
    return conditions


async def list_page(
    db: AsyncSession, flt: UsageFilter, *, limit: int = 100, before: Cursor | None = None
) -> tuple[list[UsageEntry], Cursor | None]:
    """Newest first; ``before`` is the cursor the previous page returned."""
    limit = max(1, min(limit, MAX_PAGE))
    stmt = _select_joined(*_ROW_COLUMNS).where(*_conditions(flt))
    if before is not None:
        stmt = stmt.where(
            or_(
                RequestLog.created_at < before.created_at,
                and_(RequestLog.created_at == before.created_at, RequestLog.id < before.id),
            )
        )
    stmt = stmt.order_by(RequestLog.created_at.desc(), RequestLog.id.desc()).limit(limit + 1)
    result = await db.execute(stmt)
    rows = [UsageEntry(**dict(row._mapping)) for row in result]
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], Cursor(last.created_at, last.id)


async def iter_rows(
    sessionmaker: async_sessionmaker[AsyncSession],
    flt: UsageFilter,
    *,
    batch_size: int = EXPORT_BATCH,
) -> AsyncIterator[list[UsageEntry]]:
    """Every matching row, newest first, in batches; a short session per batch, so a
    slow reader never holds a pooled connection and the table is never loaded whole."""
    cursor: Cursor | None = None
    while True:
        async with sessionmaker() as db:
            rows, cursor = await list_page(db, flt, limit=batch_size, before=cursor)
        if rows:
            yield rows
        if cursor is None:
            return


# --------------------------------------------------------------------------- aggregates


@dataclass(frozen=True)
class UsageGroup:
    key: str | int | None
    label: str | None
    requests: int
    ok: int
    error: int
    other: int
    prompt_tokens: int
    completion_tokens: int
    latency_ms_sum: float
    max_latency_ms: float | None
    ttft_ms_sum: float
    ttft_count: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_ms_sum / self.requests if self.requests else None

    @property
    def avg_ttft_ms(self) -> float | None:
        return self.ttft_ms_sum / self.ttft_count if self.ttft_count else None


def _day_expression(dialect: str) -> ColumnElement[Any]:
    """The UTC calendar date of ``created_at`` (SQLite stores naive UTC text)."""
    if dialect == "sqlite":
        return func.date(RequestLog.created_at)
    # A literal, not a bind parameter: PostgreSQL matches GROUP BY expressions textually.
    return cast(func.timezone(literal_column("'UTC'"), RequestLog.created_at), Date)


def _group_columns(group_by: GroupBy, dialect: str) -> tuple[Any, ...]:
    if group_by == "day":
        return (_day_expression(dialect),)
    if group_by == "model":
        return (RequestLog.model,)
    if group_by == "user":
        return (RequestLog.user_id, User.username)
    return (RequestLog.api_key_id, ApiKey.name)


def _count_where(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _aggregate_columns() -> tuple[ColumnElement[Any], ...]:
    return (
        func.count(RequestLog.id).label("requests"),
        _count_where(RequestLog.status == "ok").label("ok"),
        _count_where(RequestLog.status == "error").label("error"),
        func.coalesce(func.sum(RequestLog.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(RequestLog.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(RequestLog.latency_ms), 0.0).label("latency_ms_sum"),
        func.max(RequestLog.latency_ms).label("max_latency_ms"),
        func.coalesce(func.sum(RequestLog.ttft_ms), 0.0).label("ttft_ms_sum"),
        func.count(RequestLog.ttft_ms).label("ttft_count"),
    )


def _group_key(group_by: GroupBy, values: Sequence[Any]) -> tuple[str | int | None, str | None]:
    key = values[0]
    if isinstance(key, date):
        key = key.isoformat()
    if group_by in ("user", "key"):
        return key, values[1]
    return key, None if key is None else str(key)


async def summarize(db: AsyncSession, flt: UsageFilter, group_by: GroupBy) -> list[UsageGroup]:
    """Aggregates per group in one query: days ascending, otherwise most requests first."""
    groups = _group_columns(group_by, db.get_bind().dialect.name)
    stmt = _select_joined(*groups, *_aggregate_columns()).where(*_conditions(flt)).group_by(*groups)
    result = await db.execute(stmt)
    out: list[UsageGroup] = []
    for row in result:
        values = tuple(row)
        key, label = _group_key(group_by, values[: len(groups)])
        m = row._mapping
        requests = int(m["requests"])
        ok, error = int(m["ok"]), int(m["error"])
        max_latency = m["max_latency_ms"]
        out.append(
            UsageGroup(
                key=key,
                label=label,
                requests=requests,
                ok=ok,
                error=error,
                other=requests - ok - error,
                prompt_tokens=int(m["prompt_tokens"]),
                completion_tokens=int(m["completion_tokens"]),
                latency_ms_sum=float(m["latency_ms_sum"]),
                max_latency_ms=None if max_latency is None else float(max_latency),
                ttft_ms_sum=float(m["ttft_ms_sum"]),
                ttft_count=int(m["ttft_count"]),
            )
        )
    return _ordered(out, group_by)


def _ordered(groups: list[UsageGroup], group_by: GroupBy) -> list[UsageGroup]:
    if group_by == "day":
        return sorted(groups, key=lambda g: str(g.key))
    return sorted(groups, key=lambda g: (-g.requests, str(g.key)))


def total_of(groups: Sequence[UsageGroup]) -> UsageGroup:
    """The groups added up (exact: sums and counts, averages derived from them)."""
    maxima = [g.max_latency_ms for g in groups if g.max_latency_ms is not None]
    return UsageGroup(
        key=None,
        label=None,
        requests=sum(g.requests for g in groups),
        ok=sum(g.ok for g in groups),
        error=sum(g.error for g in groups),
        other=sum(g.other for g in groups),
        prompt_tokens=sum(g.prompt_tokens for g in groups),
        completion_tokens=sum(g.completion_tokens for g in groups),
        latency_ms_sum=sum(g.latency_ms_sum for g in groups),
        max_latency_ms=max(maxima) if maxima else None,
        ttft_ms_sum=sum(g.ttft_ms_sum for g in groups),
        ttft_count=sum(g.ttft_count for g in groups),
    )


# --------------------------------------------------------------------------- CSV cells

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV-ready cell: ISO timestamps, empty for NULL, text that a spreadsheet would
    run as a formula prefixed with ``'`` (numbers stay numbers)."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_values(entry: UsageEntry) -> list[Any]:
    return [csv_cell(value) for value in entry.as_dict().values()]

"""The one way usage rows are inserted: keyed rows are idempotent.

Rows without a key (most /v1 requests) are plain inserts. A keyed row replaces the row
under its key (``replace=True``: the writer and the journal's replay, so the final row of
a request wins over an earlier guess) or yields to it (``replace=False``: the sweeper's
"interrupted" row for an answer whose gateway died never overwrites a real one).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from chatgate.db.models import RequestLog

TABLE = cast(Table, RequestLog.__table__)
_NOT_REPLACED = {"id", "record_key"}


def insert_statement(dialect: str, *, replace: bool = True) -> Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(TABLE)
    if not replace:
        return statement.on_conflict_do_nothing(index_elements=[TABLE.c.record_key])
    return statement.on_conflict_do_update(
        index_elements=[TABLE.c.record_key],
        set_={
            column.name: statement.excluded[column.name]
            for column in TABLE.columns
            if column.name not in _NOT_REPLACED
        },
    )


async def insert_rows(
    session: AsyncSession, values: list[dict[str, Any]], *, replace: bool = True
) -> None:
    """Insert ``values`` (one executemany); the caller commits."""
    dialect = session.get_bind().dialect.name
    await session.execute(insert_statement(dialect, replace=replace), _storable(values))


def _storable(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows quote what clients sent (a refused ``model`` name, an engine's message about
    it); PostgreSQL text cannot hold NUL, and a ``"model": "a\u0000b"`` made the row, and
    so the request, fail with a 500. NULs are dropped from every text value."""
    if not any(isinstance(v, str) and "\x00" in v for row in values for v in row.values()):
        return values
    return [
        {k: v.replace("\x00", "") if isinstance(v, str) else v for k, v in row.items()}
        for row in values
    ]

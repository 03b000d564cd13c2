"""Stored responses: per user, for ``CHATGATE_RESPONSES_RETENTION_DAYS``.

A response another user stored, or one past its retention, reads as missing, exactly as
an unknown id does (OpenAI's "not found"): no one learns which ids exist. Expired rows
are deleted lazily: at most once per ``CLEANUP_INTERVAL`` and process, a save also
deletes every row older than the retention. One indexed
``DELETE … WHERE created_at < cutoff``: cheap, and fleet-safe without coordination, since
any replica may run it and a second run finds nothing left to delete.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.db.models import StoredResponse
from chatgate.errors import APIError

log = logging.getLogger("chatgate.responses")

CLEANUP_INTERVAL = 600.0  # seconds between one process's deletes of expired rows

# What an id of ours can be (``resp_`` + hex): anything else is not looked up at all
# (PostgreSQL refuses NUL bytes, and no stored id is longer than its column).
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def not_found(response_id: str, param: str | None = None) -> APIError:
    """OpenAI's answers: a ``previous_response_id`` that is not there (unknown, another
    user's, expired, deleted, never stored) is a 400 ``previous_response_not_found``,
    what agent clients look for to resend the whole conversation; GET and DELETE of such
    an id are a 404. An id that cannot be ours is not repeated (the message goes into the
    usage row, and PostgreSQL refuses a NUL byte)."""
    named = f" with id '{response_id}'" if _ID.fullmatch(response_id) else ""
    if param:
        message = f"Previous response{named} not found."
        return APIError(400, message, "previous_response_not_found", param=param)
    message = f"Response{named} not found."
    return APIError(404, message, "not_found", error_type="invalid_request_error")


@dataclass
class ResponseStore:
    sessionmaker: async_sessionmaker[AsyncSession]
    retention_days: float
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic
    next_cleanup: float = 0.0  # monotonic time of the next delete of expired rows

    @property
    def cutoff(self) -> datetime:
        return self.now() - timedelta(days=self.retention_days)

    async def get(self, response_id: str, user_id: int) -> StoredResponse | None:
        """The row, when ``user_id`` stored it and it has not expired."""
        if not _ID.fullmatch(response_id):
            return None
        async with self.sessionmaker() as db:
            row = await db.get(StoredResponse, response_id)
        if row is None or row.user_id != user_id or row.created_at < self.cutoff:
            return None
        return row

    async def save(self, user_id: int, body: dict[str, Any], context: list[dict[str, Any]]) -> None:
        row = StoredResponse(
            id=body["id"],
            user_id=user_id,
            model=body["model"][:128],
            status=body["status"],
            previous_response_id=body.get("previous_response_id"),
            context=context,
            body=body,
            created_at=self.now(),
        )
        async with self.sessionmaker() as db:
            db.add(row)
            if self.monotonic() >= self.next_cleanup:
                self.next_cleanup = self.monotonic() + CLEANUP_INTERVAL
                await self._delete_expired(db)
            await db.commit()

    async def delete(self, response_id: str, user_id: int) -> bool:
        if not _ID.fullmatch(response_id):
            return False
        async with self.sessionmaker() as db:
            result = await db.execute(
                delete(StoredResponse).where(
                    StoredResponse.id == response_id,
                    StoredResponse.user_id == user_id,
                    StoredResponse.created_at >= self.cutoff,
                )
            )
            await db.commit()
        return bool(getattr(result, "rowcount", 0))

    async def delete_expired(self) -> int:
        async with self.sessionmaker() as db:
            deleted = await self._delete_expired(db)
            await db.commit()
        return deleted

    async def _delete_expired(self, db: AsyncSession) -> int:
        result = await db.execute(
            delete(StoredResponse).where(StoredResponse.created_at < self.cutoff)
        )
        deleted = int(getattr(result, "rowcount", 0) or 0)
        if deleted:
            log.info("deleted %d stored responses older than %s days", deleted,
                     self.retention_days)  # fmt: skip
        return deleted

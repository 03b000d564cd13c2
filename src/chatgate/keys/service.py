from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.auth import apikeys
from chatgate.auth.cache import invalidate_key
from chatgate.db.models import ApiKey
from chatgate.errors import not_found


async def create_key(
    db: AsyncSession,
    user_id: int,
    name: str,
    *,
    scopes: Sequence[str] | None = None,
    expires_at: datetime | None = None,
    limits: dict[str, Any] | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; the plaintext is returned here and never stored."""
    plaintext = apikeys.generate_key()
    row = ApiKey(
        user_id=user_id,
        name=name,
        prefix=apikeys.display_prefix(plaintext),
        key_hash=apikeys.hash_key(plaintext),
        scopes=list(scopes or []),
        limits=limits or {},
        expires_at=expires_at,
    )
    db.add(row)
    await db.commit()
    return row, plaintext


async def list_keys(db: AsyncSession, user_id: int) -> list[ApiKey]:
    query = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)
    return list((await db.scalars(query)).all())


async def revoke_key(db: AsyncSession, user_id: int, key_id: int) -> ApiKey:
    row = await db.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.user_id == user_id))
    if row is None:
        raise not_found("API key")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await db.commit()
        invalidate_key(row.id)  # after the commit: a request racing it reads the new row
    return row

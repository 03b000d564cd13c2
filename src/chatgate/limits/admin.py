"""Changing limits: per role (over the built-in defaults), per user, per API key.

Shared by the admin API and the CLI. A field set to null means unlimited; a field
left out keeps what was there.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.auth.cache import invalidate_key, invalidate_user
from chatgate.db.models import ApiKey, RoleLimits, User
from chatgate.errors import APIError, not_found
from chatgate.limits.policy import POLICY_FIELDS, LimitPolicy

ROLES = ("user", "admin")


def merged(current: dict[str, Any] | None, changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise APIError(400, f"Unknown limit(s): {', '.join(sorted(unknown))}", "invalid_limits")
    result = {**(current or {}), **changes}
    try:
        LimitPolicy.model_validate(result)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise APIError(400, f"{field}: {first['msg']}", "invalid_limits", param=field) from exc
    return result


async def set_role_limits(db: AsyncSession, role: str, changes: dict[str, Any]) -> dict[str, Any]:
    if role not in ROLES:
        raise not_found(f"Role '{role}'")
    row = await db.get(RoleLimits, role)
    if row is None:
        row = RoleLimits(role=role, limits={})
        db.add(row)
    row.limits = merged(row.limits, changes)
    await db.commit()
    return dict(row.limits)


async def _set_owner_limits(
    db: AsyncSession, owner: User | ApiKey | None, what: str, changes: dict[str, Any]
) -> dict[str, Any]:
    if owner is None:
        raise not_found(what)
    owner.limits = merged(owner.limits, changes)
    await db.commit()
    # Cached API-key identities carry these limits: drop them after the commit.
    if isinstance(owner, ApiKey):
        invalidate_key(owner.id)
    else:
        invalidate_user(owner.id)
    return dict(owner.limits)


async def set_user_limits(
    db: AsyncSession, user_id: int, changes: dict[str, Any]
) -> dict[str, Any]:
    return await _set_owner_limits(db, await db.get(User, user_id), "User", changes)


async def set_key_limits(db: AsyncSession, key_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    return await _set_owner_limits(db, await db.get(ApiKey, key_id), "API key", changes)

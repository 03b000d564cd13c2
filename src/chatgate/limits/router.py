"""``/api/admin/limits`` (role, user and key limits) and ``/api/limits/me``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Body

from chatgate.deps import AdminUser, CurrentUser, DbDep, StateDep
from chatgate.limits import admin
from chatgate.limits.policy import LimitPolicy
from chatgate.limits.service import period_start

router = APIRouter(tags=["limits"])

LimitChanges = Body(
    ...,
    examples=[{"requests_per_minute": 60, "tokens_per_day": 200000, "concurrent_streams": None}],
)


@router.get("/api/admin/limits")
async def role_limits(_admin: AdminUser, state: StateDep) -> dict[str, Any]:
    state.limits.invalidate_roles()
    return {
        "roles": {role: (await state.limits.role_policy(role)).model_dump() for role in admin.ROLES}
    }


@router.put("/api/admin/limits/roles/{role}")
async def put_role_limits(
    role: str,
    _admin: AdminUser,
    db: DbDep,
    state: StateDep,
    changes: dict[str, Any] = LimitChanges,
) -> dict[str, Any]:
    overrides = await admin.set_role_limits(db, role, changes)
    state.limits.invalidate_roles()
    effective = await state.limits.role_policy(role)
    return {"role": role, "overrides": overrides, "effective": effective.model_dump()}


@router.put("/api/admin/users/{user_id}/limits")
async def put_user_limits(
    user_id: int, _admin: AdminUser, db: DbDep, changes: dict[str, Any] = LimitChanges
) -> dict[str, Any]:
    return {"user_id": user_id, "limits": await admin.set_user_limits(db, user_id, changes)}


@router.put("/api/admin/keys/{key_id}/limits")
async def put_key_limits(
    key_id: int, _admin: AdminUser, db: DbDep, changes: dict[str, Any] = LimitChanges
) -> dict[str, Any]:
    return {"key_id": key_id, "limits": await admin.set_key_limits(db, key_id, changes)}


@router.get("/api/limits/me")
async def my_limits(identity: CurrentUser, state: StateDep) -> dict[str, Any]:
    """The caller's effective limits and what the budgets have used so far."""
    now = datetime.now(UTC)
    result: list[dict[str, Any]] = []
    for subject in await state.limits.subjects(identity):
        policy: LimitPolicy = subject.policy
        used = {
            f"tokens_used_{period}": await state.limits.tokens_used(
                subject, period_start(period, now)
            )
            for period in ("day", "month")
        }
        result.append({"subject": subject.key, **policy.model_dump(), **used})
    return {"limits": result}

"""``/api/admin/limits`` (role, user and key limits) and ``/api/limits/me``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from chatgate.api_route import GatewayRoute
from chatgate.deps import AdminUser, CurrentUser, DbDep, StateDep
from chatgate.limits import admin
from chatgate.limits.policy import LimitPolicy
from chatgate.limits.schemas import LimitChanges
from chatgate.limits.service import period_start
from chatgate.openapi_responses import SIGNED_IN, errors
from chatgate.params import RowId

router = APIRouter(tags=["limits"], responses=SIGNED_IN, route_class=GatewayRoute)


@router.get("/api/admin/limits")
async def role_limits(_admin: AdminUser, state: StateDep) -> dict[str, Any]:
    state.limits.invalidate_roles()
    return {
        "roles": {role: (await state.limits.role_policy(role)).model_dump() for role in admin.ROLES}
    }


@router.put("/api/admin/limits/roles/{role}", responses=errors(400, 404, 413))
async def put_role_limits(
    role: str,
    _admin: AdminUser,
    db: DbDep,
    state: StateDep,
    changes: LimitChanges,
) -> dict[str, Any]:
    overrides = await admin.set_role_limits(db, role, changes.changes())
    state.limits.invalidate_roles()
    effective = await state.limits.role_policy(role)
    return {"role": role, "overrides": overrides, "effective": effective.model_dump()}


@router.put("/api/admin/users/{user_id}/limits", responses=errors(400, 404, 413))
async def put_user_limits(
    user_id: RowId, _admin: AdminUser, db: DbDep, changes: LimitChanges
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "limits": await admin.set_user_limits(db, user_id, changes.changes()),
    }


@router.put("/api/admin/keys/{key_id}/limits", responses=errors(400, 404, 413))
async def put_key_limits(
    key_id: RowId, _admin: AdminUser, db: DbDep, changes: LimitChanges
) -> dict[str, Any]:
    return {"key_id": key_id, "limits": await admin.set_key_limits(db, key_id, changes.changes())}


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

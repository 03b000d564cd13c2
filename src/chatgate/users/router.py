"""``/api/users/me`` (self-service) and ``/api/admin/users`` (admin CRUD)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from chatgate.api_route import GatewayRoute
from chatgate.deps import AdminUser, CurrentUser, DbDep
from chatgate.errors import APIError
from chatgate.openapi_responses import SIGNED_IN, errors
from chatgate.params import RowId
from chatgate.users import service
from chatgate.users.schemas import (
    PasswordChange,
    UserCreate,
    UserList,
    UserOut,
    UserSettings,
    UserUpdate,
)

router = APIRouter(tags=["users"], responses=SIGNED_IN, route_class=GatewayRoute)


@router.get("/api/users/me")
async def me(identity: CurrentUser, db: DbDep) -> UserOut:
    return UserOut.model_validate(await service.get_user(db, identity.user_id))


@router.patch("/api/users/me/settings", responses=errors(400, 413))
async def update_my_settings(body: UserSettings, identity: CurrentUser, db: DbDep) -> UserOut:
    user = await service.get_user(db, identity.user_id)
    changes = body.model_dump(exclude_unset=True)
    return UserOut.model_validate(await service.update_settings(db, user, changes))


@router.post("/api/users/me/password", status_code=204, responses=errors(400, 413))
async def change_my_password(body: PasswordChange, identity: CurrentUser, db: DbDep) -> Response:
    user = await service.get_user(db, identity.user_id)
    await service.change_own_password(db, user, body.current_password, body.new_password)
    return Response(status_code=204)


@router.get("/api/admin/users")
async def list_users(_admin: AdminUser, db: DbDep) -> UserList:
    users = await service.list_users(db)
    return UserList(users=[UserOut.model_validate(user) for user in users])


@router.post("/api/admin/users", status_code=201, responses=errors(400, 409, 413))
async def create_user(body: UserCreate, _admin: AdminUser, db: DbDep) -> UserOut:
    user = await service.create_user(
        db, body.username, body.password, role=body.role, email=body.email
    )
    return UserOut.model_validate(user)


@router.get("/api/admin/users/{user_id}", responses=errors(400, 404))
async def get_user(user_id: RowId, _admin: AdminUser, db: DbDep) -> UserOut:
    return UserOut.model_validate(await service.get_user(db, user_id))


@router.patch("/api/admin/users/{user_id}", responses=errors(400, 404, 409, 413))
async def update_user(user_id: RowId, body: UserUpdate, admin: AdminUser, db: DbDep) -> UserOut:
    changes = body.model_dump(exclude_unset=True)
    if user_id == admin.user_id and (changes.get("disabled") or changes.get("role") == "user"):
        raise APIError(400, "You cannot disable or demote your own account", "self_lockout")
    user = await service.get_user(db, user_id)
    return UserOut.model_validate(await service.update_user(db, user, changes))

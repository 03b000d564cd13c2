"""Account operations shared by the admin API and the CLI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.auth.cache import invalidate_user
from chatgate.auth.passwords import hash_password_async, verify_password_async
from chatgate.db.models import AuthSession, User
from chatgate.errors import APIError, not_found


async def create_user(
    db: AsyncSession, username: str, password: str, *, role: str = "user", email: str | None = None
) -> User:
    user = User(
        username=username,
        email=email,
        password_hash=await hash_password_async(password),
        role=role,
        disabled=False,
        settings={},
    )
    db.add(user)
    try:
        await db.commit()
    except IntegrityError as exc:
        await db.rollback()
        raise APIError(
            409, f"User '{username}' (or that e-mail) already exists", "user_exists"
        ) from exc
    return user


async def get_user(db: AsyncSession, user_id: int) -> User:
    user = await db.get(User, user_id)
    if user is None:
        raise not_found("User")
    return user


async def get_by_username(db: AsyncSession, username: str) -> User:
    user = await db.scalar(select(User).where(User.username == username))
    if user is None:
        raise not_found(f"User '{username}'")
    return user


async def list_users(db: AsyncSession) -> list[User]:
    return list((await db.scalars(select(User).order_by(User.id))).all())


async def count_users(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(User)) or 0)


async def set_password(db: AsyncSession, user: User, password: str) -> None:
    """Change the password and end every login session of the user."""
    user.password_hash = await hash_password_async(password)
    await _revoke_sessions(db, user.id)
    await db.commit()


async def change_own_password(db: AsyncSession, user: User, current: str, new: str) -> None:
    if not await verify_password_async(user.password_hash, current):
        raise APIError(400, "The current password is not correct", "wrong_password")
    await set_password(db, user, new)


async def set_disabled(db: AsyncSession, user: User, disabled: bool) -> None:
    user.disabled = disabled
    if disabled:
        await _revoke_sessions(db, user.id)
    await db.commit()
    invalidate_user(user.id)


async def update_user(db: AsyncSession, user: User, changes: dict[str, Any]) -> User:
    if "password" in changes and changes["password"] is not None:
        user.password_hash = await hash_password_async(changes.pop("password"))
        await _revoke_sessions(db, user.id)
    if "email" in changes:  # an explicit null clears the e-mail
        user.email = changes["email"]
    for field in ("role", "disabled"):
        if changes.get(field) is not None:
            setattr(user, field, changes[field])
    if changes.get("disabled"):
        await _revoke_sessions(db, user.id)
    try:
        await db.commit()
    except IntegrityError as exc:
        await db.rollback()
        raise APIError(409, "That e-mail is already used", "user_exists") from exc
    invalidate_user(user.id)  # role or disabled may have changed: cached API keys re-read
    return user


async def update_settings(db: AsyncSession, user: User, settings: dict[str, Any]) -> User:
    merged = {**(user.settings or {}), **settings}
    user.settings = {key: value for key, value in merged.items() if value is not None}
    await db.commit()
    invalidate_user(user.id)
    return user


async def _revoke_sessions(db: AsyncSession, user_id: int) -> None:
    await db.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )

"""Login sessions, token refresh/logout, and resolving a request's credentials."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.auth import apikeys
from chatgate.auth.cache import IdentityCache
from chatgate.auth.identity import Identity
from chatgate.auth.passwords import hash_password_async, needs_rehash, verify_password_async
from chatgate.auth.schemas import TokenResponse
from chatgate.auth.tokens import TokenClaims, TokenCodec
from chatgate.db.models import ApiKey, AuthSession, User
from chatgate.errors import unauthorized
from chatgate.settings import Settings

log = logging.getLogger("chatgate.auth")

# last_used_at is informational: refreshing it at most this often keeps /v1 calls read-only.
# With the identity cache the row is read at most once per cache TTL per key anyway.
LAST_USED_RESOLUTION = timedelta(minutes=5)


def _identity(user: User, **extra: object) -> Identity:
    return Identity(
        user_id=user.id,
        username=user.username,
        role=user.role,
        settings=dict(user.settings or {}),
        limits=dict(user.limits or {}),
        **extra,  # type: ignore[arg-type]
    )


async def login(
    db: AsyncSession, codec: TokenCodec, settings: Settings, username: str, password: str
) -> TokenResponse:
    user = await db.scalar(select(User).where(User.username == username))
    valid = await verify_password_async(user.password_hash if user else None, password)
    if not valid or user is None:
        raise unauthorized("Incorrect username or password")
    if user.disabled:
        raise unauthorized("This account is disabled")
    if needs_rehash(user.password_hash):
        user.password_hash = await hash_password_async(password)
    lifetime = timedelta(days=settings.refresh_token_days)
    session = AuthSession(user_id=user.id, expires_at=datetime.now(UTC) + lifetime)
    db.add(session)
    await db.commit()
    return issue_tokens(codec, settings, user, session.id)


def issue_tokens(
    codec: TokenCodec, settings: Settings, user: User, session_id: str
) -> TokenResponse:
    access_life = timedelta(minutes=settings.access_token_minutes)
    refresh_life = timedelta(days=settings.refresh_token_days)
    access, _ = codec.encode(
        user_id=user.id,
        username=user.username,
        role=user.role,
        session_id=session_id,
        kind="access",
        lifetime=access_life,
    )
    refresh, _ = codec.encode(
        user_id=user.id,
        username=user.username,
        role=user.role,
        session_id=session_id,
        kind="refresh",
        lifetime=refresh_life,
    )
    return TokenResponse(
        access_token=access,
        expires_in=int(access_life.total_seconds()),
        refresh_token=refresh,
        refresh_expires_in=int(refresh_life.total_seconds()),
    )


async def refresh(
    db: AsyncSession, codec: TokenCodec, settings: Settings, refresh_token: str
) -> TokenResponse:
    claims = codec.decode(refresh_token, "refresh")
    if claims is None:
        raise unauthorized("Invalid or expired refresh token")
    user, _ = await _load_session_user(db, claims)
    return issue_tokens(codec, settings, user, claims.session_id)


async def logout(db: AsyncSession, session_id: str) -> None:
    await db.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    await db.commit()


async def _load_session_user(db: AsyncSession, claims: TokenClaims) -> tuple[User, AuthSession]:
    row = (
        await db.execute(
            select(User, AuthSession)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(AuthSession.id == claims.session_id, User.id == claims.user_id)
        )
    ).first()
    if row is None:
        raise unauthorized("Session not found")
    user, session = row
    if session.revoked_at is not None or session.expires_at <= datetime.now(UTC):
        raise unauthorized("Session ended; please log in again")
    if user.disabled:
        raise unauthorized("This account is disabled")
    return user, session


async def identity_from_token(db: AsyncSession, codec: TokenCodec, token: str) -> Identity:
    if apikeys.looks_like_key(token):
        identity, _ = await _identity_from_key(db, token, apikeys.hash_key(token))
        return identity
    claims = codec.decode(token, "access")
    if claims is None:
        raise unauthorized("Invalid or expired token")
    user, _ = await _load_session_user(db, claims)
    return _identity(user, session_id=claims.session_id)


async def identity_from_api_key(
    sessionmaker: async_sessionmaker[AsyncSession], cache: IdentityCache, key: str
) -> Identity:
    """An API key's identity: from the cache when it was resolved moments ago, else the DB.

    A hit opens no database session at all. The dict lookup by SHA-256 is not
    constant-time, but its input is a hash of the presented key, which an attacker
    cannot steer towards a stored one.
    """
    key_hash = apikeys.hash_key(key)
    cached = cache.get(key_hash, datetime.now(UTC))
    if cached is not None:
        return cached
    async with sessionmaker() as db:
        identity, expires_at = await _identity_from_key(db, key, key_hash)
    cache.put(key_hash, identity, expires_at)
    return identity


async def _identity_from_key(
    db: AsyncSession, key: str, key_hash: str
) -> tuple[Identity, datetime | None]:
    row = await db.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))
    if row is None or not apikeys.matches(key, row.key_hash):
        raise unauthorized("Incorrect API key provided")
    now = datetime.now(UTC)
    if row.revoked_at is not None:
        raise unauthorized("This API key was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise unauthorized("This API key has expired")
    if row.user.disabled:
        raise unauthorized("The account owning this API key is disabled")
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        row.last_used_at = now
        await db.commit()
    identity = _identity(
        row.user, api_key_id=row.id, scopes=tuple(row.scopes or ()),
        key_limits=dict(row.limits or {}),
    )
    return identity, row.expires_at


async def development_identity(db: AsyncSession) -> Identity:
    admin = await db.scalar(
        select(User).where(User.role == "admin", User.disabled.is_(False)).order_by(User.id)
    )
    if admin is None:
        raise unauthorized("Development mode needs an enabled admin account")
    return _identity(admin)

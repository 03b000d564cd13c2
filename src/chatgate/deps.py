"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.auth import service as auth_service
from chatgate.auth.apikeys import looks_like_key
from chatgate.auth.identity import Identity
from chatgate.auth.scopes import key_may_access
from chatgate.errors import forbidden, unauthorized
from chatgate.state import AppState

log = logging.getLogger("chatgate.auth")


# Dependencies are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in
# its thread pool, a thread hop per request for what is an attribute lookup.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.chatgate
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_db(state: StateDep) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker() as session:
        yield session


# Not for streaming handlers: they open short sessions themselves, so no pooled
# connection is held for the whole length of a stream.
DbDep = Annotated[AsyncSession, Depends(get_db)]


def bearer_token(request: Request) -> str | None:
    return token_from_header(request.headers.get("authorization", ""))


def token_from_header(authorization: str) -> str | None:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def get_identity(request: Request, state: StateDep) -> Identity:
    identity = await identify(
        state,
        request.headers.get("authorization", ""),
        # scope["path"], not request.url.path: the same path without building a URL object.
        request.scope["path"],
        request.method,
        request.client.host if request.client else "",
    )
    request.state.identity = identity
    return identity


async def identify(
    state: AppState, authorization: str, path: str, method: str, client_host: str
) -> Identity:
    """Who sends this request (an API key, a session token, or the development bypass),
    and whether a key's scopes allow ``path``. Shared by the dependency and the raw
    ``/v1`` endpoints."""
    token = token_from_header(authorization)
    if token is not None and looks_like_key(token):
        # The hot path of /v1: usually answered from the cache, without a DB session.
        identity = await auth_service.identity_from_api_key(
            state.sessionmaker, state.identity_cache, token
        )
    else:
        identity = await _session_or_development_identity(state, token, method, path, client_host)
    if identity.api_key_id is not None and not key_may_access(identity.scopes, path):
        raise forbidden("This API key's scopes do not allow this request")
    return identity


async def _session_or_development_identity(
    state: AppState, token: str | None, method: str, path: str, client_host: str
) -> Identity:
    async with state.sessionmaker() as db:
        if token is not None:
            identity = await auth_service.identity_from_token(db, state.tokens, token)
        elif state.settings.development_mode and is_loopback(client_host):
            # Checked per request as well: a server started with another bind address
            # (e.g. `uvicorn --host 0.0.0.0`) must not offer the bypass to the network.
            log.warning("DEVELOPMENT_MODE: unauthenticated %s %s served as admin", method, path)
            identity = await auth_service.development_identity(db)
        else:
            raise unauthorized("Missing bearer token or API key")
    return identity


CurrentUser = Annotated[Identity, Depends(get_identity)]


async def require_admin(identity: CurrentUser) -> Identity:
    if not identity.is_admin:
        raise forbidden("Administrator role required")
    return identity


AdminUser = Annotated[Identity, Depends(require_admin)]

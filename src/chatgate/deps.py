"""FastAPI dependencies as ``Annotated`` aliases."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.auth import service as auth_service
from chatgate.auth.identity import Identity
from chatgate.errors import forbidden, unauthorized
from chatgate.state import AppState

log = logging.getLogger("chatgate.auth")


def get_state(request: Request) -> AppState:
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
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def get_identity(request: Request, state: StateDep) -> Identity:
    token = bearer_token(request)
    async with state.sessionmaker() as db:
        if token is not None:
            identity = await auth_service.identity_from_token(db, state.tokens, token)
        elif state.settings.development_mode:
            log.warning(
                "DEVELOPMENT_MODE: unauthenticated %s %s served as admin",
                request.method,
                request.url.path,
            )
            identity = await auth_service.development_identity(db)
        else:
            raise unauthorized("Missing bearer token or API key")
    request.state.identity = identity
    return identity


CurrentUser = Annotated[Identity, Depends(get_identity)]


async def require_admin(identity: CurrentUser) -> Identity:
    if not identity.is_admin:
        raise forbidden("Administrator role required")
    return identity


AdminUser = Annotated[Identity, Depends(require_admin)]

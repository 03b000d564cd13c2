"""``/api/auth``: login, verify, refresh, logout."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from chatgate.api_route import GatewayRoute
from chatgate.auth import service
from chatgate.auth.schemas import LoginRequest, RefreshRequest, TokenResponse, VerifyResponse
from chatgate.deps import CurrentUser, DbDep, StateDep, bearer_token
from chatgate.errors import APIError
from chatgate.openapi_responses import PUBLIC, errors

router = APIRouter(prefix="/api/auth", tags=["auth"], responses=PUBLIC, route_class=GatewayRoute)


@router.post("/login", responses=errors(400, 401, 403, 413, 429))
async def login(body: LoginRequest, request: Request, state: StateDep, db: DbDep) -> TokenResponse:
    throttle = state.limits.logins
    ip = request.client.host if request.client else "unknown"
    await throttle.check(body.username, ip)
    try:
        tokens = await service.login(db, state.tokens, state.settings, body.username, body.password)
    except APIError:
        await throttle.failed(body.username, ip)
        raise
    await throttle.succeeded(body.username, ip)
    return tokens


@router.post("/refresh", responses=errors(400, 401, 403, 413))
async def refresh(body: RefreshRequest, state: StateDep, db: DbDep) -> TokenResponse:
    return await service.refresh(db, state.tokens, state.settings, body.refresh_token)


@router.get("/verify", responses=errors(401, 403))
async def verify(request: Request, identity: CurrentUser, state: StateDep) -> VerifyResponse:
    token = bearer_token(request)
    claims = state.tokens.decode(token, "access") if token else None
    exp = int(claims.expires_at.timestamp()) if claims else None
    return VerifyResponse(
        username=identity.username, role=identity.role, exp=exp, user_id=identity.user_id
    )


@router.post("/logout", status_code=204, responses=errors(400, 401, 403))
async def logout(identity: CurrentUser, db: DbDep) -> Response:
    if identity.session_id is None:
        raise APIError(
            400, "Only login sessions can log out; revoke API keys instead", "no_session"
        )
    await service.logout(db, identity.session_id)
    return Response(status_code=204)

"""``/api/keys``: the caller's own API keys."""

from __future__ import annotations

from fastapi import APIRouter

from chatgate.api_route import GatewayRoute
from chatgate.deps import CurrentUser, DbDep
from chatgate.keys import service
from chatgate.keys.schemas import KeyCreate, KeyCreated, KeyList, KeyOut
from chatgate.openapi_responses import SIGNED_IN, errors
from chatgate.params import RowId

router = APIRouter(prefix="/api/keys", tags=["keys"], responses=SIGNED_IN, route_class=GatewayRoute)


@router.get("")
async def list_keys(identity: CurrentUser, db: DbDep) -> KeyList:
    rows = await service.list_keys(db, identity.user_id)
    return KeyList(keys=[KeyOut.model_validate(row) for row in rows])


@router.post("", status_code=201, responses=errors(400, 413))
async def create_key(body: KeyCreate, identity: CurrentUser, db: DbDep) -> KeyCreated:
    row, plaintext = await service.create_key(
        db,
        identity.user_id,
        body.name,
        scopes=body.scopes,
        expires_at=body.expires_at,
        limits=body.limits,
    )
    return KeyCreated(**KeyOut.model_validate(row).model_dump(), key=plaintext)


@router.delete("/{key_id}", responses=errors(400, 404))
async def revoke_key(key_id: RowId, identity: CurrentUser, db: DbDep) -> KeyOut:
    return KeyOut.model_validate(await service.revoke_key(db, identity.user_id, key_id))

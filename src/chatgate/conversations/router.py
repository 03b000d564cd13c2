"""``/api/conversations``: the signed-in user's own conversations only."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from chatgate.api_route import GatewayRoute
from chatgate.conversations import service
from chatgate.conversations.schemas import (
    ConversationCreate,
    ConversationDetail,
    ConversationImport,
    ConversationOut,
    ConversationPage,
    ConversationUpdate,
    MessageOut,
)
from chatgate.deps import CurrentUser, DbDep, StateDep
from chatgate.openapi_responses import SIGNED_IN, errors

router = APIRouter(
    prefix="/api/conversations",
    tags=["conversations"],
    responses=SIGNED_IN,
    route_class=GatewayRoute,
)


@router.post("", status_code=201, responses=errors(400, 413))
async def create_conversation(
    body: ConversationCreate, identity: CurrentUser, db: DbDep
) -> ConversationOut:
    conversation = await service.create(
        db, identity.user_id, title=body.title, model=body.model, system_prompt=body.system_prompt
    )
    await db.commit()
    return ConversationOut.model_validate(conversation)


@router.get("", responses=errors(400))
async def list_conversations(
    identity: CurrentUser,
    db: DbDep,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 30,
    before: Annotated[str | None, Query(max_length=200)] = None,
    q: Annotated[str | None, Query(max_length=500)] = None,
    archived: bool = False,
) -> ConversationPage:
    rows, cursor = await service.list_page(
        db, identity.user_id, limit=limit, before=before, query=q, archived=archived
    )
    return ConversationPage(
        conversations=[ConversationOut.model_validate(row) for row in rows], next_cursor=cursor
    )


@router.post("/import", status_code=201, responses=errors(400, 413))
async def import_conversation(
    body: ConversationImport, identity: CurrentUser, db: DbDep
) -> ConversationOut:
    conversation_id = await service.import_conversation(db, identity.user_id, body)
    conversation = await service.get_owned(db, identity.user_id, conversation_id)
    return ConversationOut.model_validate(conversation)


@router.get("/{conversation_id}", responses=errors(404))
async def get_conversation(
    conversation_id: str, identity: CurrentUser, db: DbDep, state: StateDep
) -> ConversationDetail:
    conversation = await service.get_owned(db, identity.user_id, conversation_id)
    messages = await service.messages_of(db, conversation.id)
    return ConversationDetail(
        **ConversationOut.model_validate(conversation).model_dump(),
        messages=[MessageOut.model_validate(message) for message in messages],
        active_generation_id=await state.generations.active_in(conversation.id),
    )


@router.patch("/{conversation_id}", responses=errors(400, 404, 413))
async def update_conversation(
    conversation_id: str, body: ConversationUpdate, identity: CurrentUser, db: DbDep
) -> ConversationOut:
    conversation = await service.get_owned(db, identity.user_id, conversation_id)
    await service.apply_changes(db, conversation, body.model_dump(exclude_unset=True))
    return ConversationOut.model_validate(conversation)


@router.delete("/{conversation_id}", status_code=204, responses=errors(404))
async def delete_conversation(
    conversation_id: str, identity: CurrentUser, db: DbDep, state: StateDep
) -> Response:
    conversation = await service.get_owned(db, identity.user_id, conversation_id)
    await state.generations.stop_in(conversation.id, identity.user_id)
    await service.remove(db, conversation)
    return Response(status_code=204)


@router.get(
    "/{conversation_id}/export",
    response_model=None,
    responses={
        200: {
            "description": "The conversation as JSON, or as Markdown with `format=markdown`",
            "content": {"application/json": {}, "text/markdown": {"schema": {"type": "string"}}},
        },
        **errors(400, 404),
    },
)
async def export_conversation(
    conversation_id: str,
    identity: CurrentUser,
    db: DbDep,
    format: Literal["json", "markdown"] = "json",
) -> Response:
    conversation = await service.get_owned(db, identity.user_id, conversation_id)
    messages = await service.messages_of(db, conversation.id)
    stem = f"chatgate-{conversation.id[:8]}"
    if format == "markdown":
        return PlainTextResponse(
            service.export_markdown(conversation, messages),
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{stem}.md"'},
        )
    detail = ConversationDetail(
        **ConversationOut.model_validate(conversation).model_dump(),
        messages=[MessageOut.model_validate(message) for message in messages],
    )
    return JSONResponse(
        detail.model_dump(mode="json"),
        headers={"Content-Disposition": f'attachment; filename="{stem}.json"'},
    )

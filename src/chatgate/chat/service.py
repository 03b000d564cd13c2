"""Preparing a web-chat turn: conversation, context, caps, and the rows written up front.

The user message and a ``pending`` assistant row are committed before the engine
is called; the runner fills in the assistant row once, at the end.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.auth.identity import Identity
from chatgate.chat.generations import Generation
from chatgate.chat.schemas import ChatRequest, SamplingParams
from chatgate.conversations import service as conversations
from chatgate.db.models import Conversation, Message, utcnow
from chatgate.engines.upstream.registry import ModelEntry
from chatgate.errors import APIError
from chatgate.limits.caps import check_prompt_caps
from chatgate.limits.service import Admission
from chatgate.settings import Settings
from chatgate.state import AppState

TITLE_FALLBACK_CHARS = 60
USER_DEFAULT_PARAMS = ("temperature", "top_p", "max_tokens")


@dataclass
class ChatJob:
    generation: Generation
    request_id: str
    identity: Identity
    model: ModelEntry
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    conversation_id: str
    assistant_message_id: int
    needs_title: bool = False
    events: dict[str, Any] = field(default_factory=dict)
    admission: Admission | None = None  # limits held until the answer is saved
    weight: float = 1.0  # the user's share of a busy engine (admission queue)

    @property
    def tenant(self) -> str:
        return f"user:{self.identity.user_id}"


# Defaults that would make an engine write several answers into one chat stream.
ONE_ANSWER_ONLY = frozenset({"n", "best_of"})


def sampling_params(
    body: SamplingParams, model: ModelEntry, user_settings: dict[str, Any], settings: Settings
) -> dict[str, Any]:
    """Model defaults, then the user's defaults, then the request; max_tokens capped. A
    chat answer is one answer: a profile's ``n`` (meant for /v1 clients) is not applied."""
    params = {k: v for k, v in model.default_params.items() if k not in ONE_ANSWER_ONLY}
    params.update({k: user_settings[k] for k in USER_DEFAULT_PARAMS if user_settings.get(k)})
    params.update(body.model_dump(exclude_none=True, include=set(SamplingParams.model_fields)))
    params.setdefault("max_tokens", default_max_tokens(model, settings))
    max_tokens = params.get("max_tokens")
    if max_tokens is not None and max_tokens > settings.max_tokens_cap:
        raise APIError(
            400,
            f"max_tokens may be at most {settings.max_tokens_cap}",
            "max_tokens_too_large",
            param="max_tokens",
        )
    return params


def default_max_tokens(model: ModelEntry, settings: Settings) -> int:
    """The profile's ``max_tokens``, else the gateway's default (never above the cap)."""
    value = model.default_params.get("max_tokens")
    chosen = value if isinstance(value, int) and value > 0 else settings.default_max_tokens
    return min(chosen, settings.max_tokens_cap)


def _history(messages: list[Message]) -> list[dict[str, Any]]:
    # Partial (interrupted) answers stay in the context: the user saw them.
    return [
        {"role": m.role, "content": m.content}
        for m in messages
        if m.role in ("user", "assistant") and m.status != "pending" and m.content
    ]


async def _conversation(
    db: AsyncSession, state: AppState, identity: Identity, body: ChatRequest
) -> tuple[Conversation, bool]:
    if body.conversation_id is None:
        conversation = await conversations.create(
            db, identity.user_id, system_prompt=body.system_prompt
        )
        return conversation, True
    conversation = await conversations.get_owned(db, identity.user_id, body.conversation_id)
    if body.system_prompt is not None:
        conversation.system_prompt = body.system_prompt or None
    return conversation, False


def _prior_path(body: ChatRequest, messages: list[Message]) -> list[Message]:
    """The branch the new turn continues: up to ``parent_id``, else up to the newest message."""
    if not body.branches and not body.regenerate:
        return conversations.branch_path(messages, messages[-1].id if messages else None)
    if body.parent_id is None:
        return []
    parent = next((m for m in messages if m.id == body.parent_id), None)
    if parent is None:
        raise APIError(
            404, "parent_id is not a message of this conversation", "not_found", param="parent_id"
        )
    if body.regenerate and parent.role != "user":
        raise APIError(
            400, "regenerate needs the id of a user message", "invalid_parent", param="parent_id"
        )
    return conversations.branch_path(messages, parent.id)


def _turn_messages(
    body: ChatRequest, prior: list[Message], is_new: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    """(context sent to the engine, messages to store, system prompt from the body)."""
    if body.regenerate:
        return _history(prior), [], None
    if body.message is not None:
        new = {"role": "user", "content": body.message}
        return [*_history(prior), new], [new], None
    assert body.messages is not None
    given = [m.model_dump() for m in body.messages]
    system = next((m["content"] for m in given if m["role"] == "system"), None)
    context = [m for m in given if m["role"] != "system"]
    return context, (context if is_new else context[-1:]), system


async def _store_turn(
    db: AsyncSession,
    conversation: Conversation,
    prior: list[Message],
    to_store: list[dict[str, Any]],
    model: ModelEntry,
) -> tuple[int | None, Message]:
    """Insert the new user message(s) and a pending assistant row; (user id, assistant)."""
    parent = prior[-1].id if prior else None
    for item in to_store:
        row = Message(conversation_id=conversation.id, parent_id=parent, **item)
        db.add(row)
        await db.flush()
        parent = row.id
    assistant = Message(
        conversation_id=conversation.id,
        parent_id=parent,
        role="assistant",
        content="",
        status="pending",
        model=model.id,
    )
    db.add(assistant)
    conversation.model = model.id
    conversation.updated_at = utcnow()
    await db.flush()
    return parent, assistant


@dataclass
class _Turn:
    model: ModelEntry
    params: dict[str, Any]
    engine_messages: list[dict[str, Any]]
    user_message_id: int | None
    assistant_id: int


async def prepare(
    state: AppState, identity: Identity, body: ChatRequest, request_id: str
) -> ChatJob:
    generation = Generation(uuid.uuid4().hex, identity.user_id, "")
    async with state.sessionmaker() as db:
        conversation, is_new = await _conversation(db, state, identity, body)
        generation.conversation_id = conversation.id
        # Fleet-wide with Redis (a lock renewed by the checkpoint heartbeat), else here.
        await state.generations.claim(generation)
        try:
            turn = await _store(db, state, identity, body, conversation, is_new, request_id)
        except BaseException:
            await state.generations.bus.release(conversation.id, generation.id)
            raise
    events = {
        "conversation_id": conversation.id,
        "user_message_id": turn.user_message_id,
        "assistant_message_id": turn.assistant_id,
        "title": conversation.title,
        "generation_id": generation.id,
        "model": turn.model.id,
    }
    return ChatJob(
        generation=generation,
        request_id=request_id,
        identity=identity,
        model=turn.model,
        messages=turn.engine_messages,
        params=turn.params,
        conversation_id=conversation.id,
        assistant_message_id=turn.assistant_id,
        needs_title=is_new and state.settings.auto_title,
        events=events,
    )


async def _store(
    db: AsyncSession,
    state: AppState,
    identity: Identity,
    body: ChatRequest,
    conversation: Conversation,
    is_new: bool,
    request_id: str,
) -> _Turn:
    settings = state.settings
    model = state.registry.resolve(
        body.model or conversation.model or identity.settings.get("default_model")
    )
    if state.splits is not None:  # an A/B split sends its share of conversations to a version
        model = state.splits.pick(state.registry, model, conversation.id)
    params = sampling_params(body, model, identity.settings, settings)
    stored = [] if is_new else await conversations.messages_of(db, conversation.id)
    prior = _prior_path(body, stored)
    context, to_store, body_system = _turn_messages(body, prior, is_new)
    system = body_system or conversation.system_prompt or identity.settings.get("system_prompt")
    engine_messages = ([{"role": "system", "content": system}] if system else []) + context
    check_prompt_caps(engine_messages, settings)
    if is_new:
        conversation.title = _fallback_title(str(to_store[-1]["content"]))
        conversation.system_prompt = body_system or conversation.system_prompt
    user_message_id, assistant = await _store_turn(db, conversation, prior, to_store, model)
    assistant.request_id = request_id
    await db.commit()
    return _Turn(model, params, engine_messages, user_message_id, assistant.id)


def _fallback_title(text: str) -> str:
    line = " ".join(text.split())
    if len(line) <= TITLE_FALLBACK_CHARS:
        return line or "New chat"
    return line[: TITLE_FALLBACK_CHARS - 1].rstrip() + "…"

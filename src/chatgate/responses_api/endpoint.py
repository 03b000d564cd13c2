"""``POST /v1/responses``, ``GET`` and ``DELETE /v1/responses/{id}`` as raw ASGI endpoints.

Raw ASGI for the same reasons as ``openai_api.endpoint`` (no per-request dependency
solving, disconnects noticed at once); a request goes through the same machinery as
``/v1/chat/completions`` (and ``/v1/messages``): identification, the chat path's checks
and ``openai_api.service.plan``, the limits, the fair queue and failover of
``Upstreams.stream``, and one usage row per request. Only the dialect differs: the
Responses body and events, and the stored responses that ``previous_response_id`` reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Receive, Scope, Send

from chatgate.auth.identity import Identity
from chatgate.deps import identify
from chatgate.engines.upstream.client import EngineError
from chatgate.engines.upstream.failover import Upstream
from chatgate.errors import APIError
from chatgate.middleware import send_json
from chatgate.openai_api import asgi, service
from chatgate.openai_api.asgi import send_error
from chatgate.openai_api.disconnect import ClientGone, DisconnectWatch, read_body
from chatgate.responses_api import translate
from chatgate.responses_api.schemas import ResponsesRequest, parse
from chatgate.responses_api.store import ResponseStore, not_found
from chatgate.responses_api.stream import ResponseTranslator, encode
from chatgate.state import AppState
from chatgate.usage.record import UsageRecord

log = logging.getLogger("chatgate.responses")

ROUTE = "v1.responses"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Exchange:
    """One admitted request: its relay call, its translator, and what to store."""

    def __init__(
        self, call: service.RelayCall, request: ResponsesRequest, translator: ResponseTranslator,
        context: list[dict[str, Any]], store: ResponseStore,
    ) -> None:  # fmt: skip
        self.call = call
        self.request = request
        self.translator = translator
        self.context = context  # the conversation up to this answer, for a follow-up
        self.store = store


class CreateEndpoint:
    """``POST /v1/responses``: streamed events or one response object, per ``stream``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.chatgate
        try:
            raw = await read_body(receive)
            exchange = await _admit(scope, state, raw)
        except APIError as exc:
            await send_error(send, exc)
            return
        except ClientGone:
            return  # left while sending the body: nothing was started
        admission = exchange.call.admission
        scope["state"]["ratelimit_headers"] = admission.headers if admission else None
        try:
            with DisconnectWatch(receive):
                await _answer(exchange, send)
        except ClientGone:
            # Nobody reads it: the status is for the access log.
            await send({"type": "http.response.start", "status": 499, "headers": []})
            await send({"type": "http.response.body", "body": b""})


class ItemEndpoint:
    """``GET /v1/responses/{id}`` (the stored response object) and ``DELETE`` (it goes):
    only the user who stored it sees it; anyone else gets the same 404 as for no id."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.chatgate
        response_id: str = scope["path_params"]["response_id"]
        try:
            identity = await _identify(scope, state)
            scope["state"]["identity"] = identity
            store = store_of(scope)
            if scope["method"] == "DELETE":
                if not await store.delete(response_id, identity.user_id):
                    raise not_found(response_id)
                body = {"id": response_id, "object": "response", "deleted": True}
            else:
                row = await store.get(response_id, identity.user_id)
                if row is None:
                    raise not_found(response_id)
                body = row.body
        except APIError as exc:
            await send_error(send, exc)
            return
        await send_json(send, 200, body, [])


def store_of(scope: Scope) -> ResponseStore:
    """The app's store, made on first use (one per app: its cleanup clock is per process)."""
    app_state = scope["app"].state
    store: ResponseStore | None = getattr(app_state, "responses_store", None)
    if store is None:
        state: AppState = app_state.chatgate
        store = ResponseStore(state.sessionmaker, state.settings.responses_retention_days)
        app_state.responses_store = store
    return store


async def _admit(scope: Scope, state: AppState, raw: bytes) -> Exchange:
    """Identify, parse, rebuild the conversation, translate, plan and admit, or raise the
    APIError to send (a refused request still leaves its usage row)."""
    identity = await _identify(scope, state)
    scope["state"]["identity"] = identity
    request_id: str = scope["state"]["request_id"]
    body = asgi.json_body(raw)
    store = store_of(scope)
    try:
        request = parse(ResponsesRequest, body)
        prior = await _previous(store, identity, request)
        chat = translate.to_chat_body(request, prior)
        call = service.plan(state, identity, request_id, "v1.chat", _checked(chat, state))
        call.route = ROUTE
        call.admission = admission = await state.limits.admit(identity)
        call.engine.ticket = call.engine.ticket.classed(admission.priority, admission.weight)
    except APIError as exc:
        await state.usage.record(_rejected(identity, request_id, body, exc))
        raise
    translator = ResponseTranslator(call.model.id, translate.echo(request, body))
    context = [*prior, *translate.input_items(request, body)]
    return Exchange(call, request, translator, context, store)


def _rejected(identity: Identity, request_id: str, body: Any, exc: APIError) -> UsageRecord:
    """The usage row of a refused request. Its texts may quote the client (a model name, a
    tag): without NUL bytes, which PostgreSQL refuses (the row, and so the answer, would
    fail with a 500)."""
    row = service.rejected_row(identity, request_id, ROUTE, body, exc)
    row.model = row.model.replace("\x00", "") if row.model else row.model
    row.error = row.error.replace("\x00", "") if row.error else row.error
    return row


async def _previous(
    store: ResponseStore, identity: Identity, request: ResponsesRequest
) -> list[dict[str, Any]]:
    """The conversation ``previous_response_id`` continues: its input items and output."""
    if request.previous_response_id is None:
        if not request.input:
            raise APIError(400, "Missing required parameter: 'input'.",
                           "missing_required_parameter", param="input")  # fmt: skip
        return []
    row = await store.get(request.previous_response_id, identity.user_id)
    if row is None:
        raise not_found(request.previous_response_id, "previous_response_id")
    return [*row.context, *row.body.get("output", [])]


def _checked(chat: dict[str, Any], state: AppState) -> dict[str, Any]:
    """The chat path's own checks (prompt caps, answer length, sampling), their ``param``
    named as this dialect names it."""
    try:
        return service.validate_body(chat, "v1.chat", state)
    except APIError as exc:
        raise translate.chat_error(exc) from None


async def _identify(scope: Scope, state: AppState) -> Identity:
    client = scope.get("client")
    return await identify(
        state, asgi.header(scope, b"authorization"), scope["path"], scope["method"],
        client[0] if client else "",
    )  # fmt: skip


async def _answer(exchange: Exchange, send: Send) -> None:
    call, translator = exchange.call, exchange.translator
    started = False
    try:
        async with call.state.upstreams.stream(call.engine) as upstream:
            # Closed on the way out: a client that left queues its cancelled row at once.
            async with aclosing(_events(exchange, upstream)) as events:
                if exchange.request.stream:
                    await send({"type": "http.response.start", "status": 200,
                                "headers": SSE_HEADERS})  # fmt: skip
                    started = True
                    async for piece in events:
                        await send({"type": "http.response.body", "body": piece,
                                    "more_body": True})  # fmt: skip
                    await send({"type": "http.response.body", "body": b""})
                    return
                async for _ in events:
                    pass
    except (EngineError, APIError) as exc:
        if started:
            raise  # the events carry engine errors: this is a bug, let it show
        await send_error(send, await service.refused(call, translator.stats, exc))
        return
    except asyncio.CancelledError:  # the client left (or the server is stopping)
        service.record_cancelled(call, translator.stats)
        raise
    if translator.outcome is not None:
        await send_error(send, translator.outcome)
        return
    assert translator.result is not None
    await send_json(send, 200, translator.result, [])


async def _events(exchange: Exchange, upstream: Upstream) -> AsyncGenerator[bytes, None]:
    """The events of one answer (``asgi.translated``: the usage row is handed to the writer
    before the last event); the response is stored before the last event too, so a
    follow-up sent right after it finds its previous response."""
    call, translator = exchange.call, exchange.translator
    yield encode(translator.start())
    async with aclosing(asgi.translated(call, translator, upstream)) as batches:
        async for events in batches:
            yield encode(events)
    if translator.outcome is not None:
        yield encode(translator.failed(translator.outcome))
        return
    last = translator.finish()
    if exchange.request.store:
        await _store(exchange)
    yield encode(last)


async def _store(exchange: Exchange) -> None:
    """Keep the response for ``previous_response_id`` and GET. The answer is already
    generated and billed: a database that cannot take it now costs the follow-up, not
    this answer (logged)."""
    assert exchange.translator.result is not None
    user_id = exchange.call.identity.user_id
    try:
        await exchange.store.save(user_id, exchange.translator.result, exchange.context)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("response %s not stored: %r", exchange.translator.id, exc)

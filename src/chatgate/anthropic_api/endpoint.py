"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens`` as raw ASGI endpoints.

Raw ASGI for the same reasons as ``openai_api.endpoint`` (no per-request dependency
solving, disconnects noticed at once); the request goes through the same machinery as
``/v1/chat/completions``: identification, ``openai_api.service.plan``, the limits, the
fair queue and failover of ``Upstreams.stream``, and one usage row per request.
Only the dialect differs: Anthropic's body, events and error shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing

from starlette.types import Receive, Scope, Send

from chatgate.anthropic_api import translate
from chatgate.anthropic_api.schemas import CountTokensRequest, MessagesRequest, parse
from chatgate.anthropic_api.stream import MessageTranslator, encode, error_event
from chatgate.anthropic_api.tokens import count_tokens
from chatgate.auth.identity import Identity
from chatgate.deps import identify
from chatgate.engines.upstream.client import EngineError
from chatgate.engines.upstream.failover import Upstream
from chatgate.errors import APIError
from chatgate.middleware import send_json
from chatgate.openai_api import asgi, service
from chatgate.openai_api.disconnect import ClientGone, DisconnectWatch, read_body
from chatgate.state import AppState

ROUTE = "v1.messages"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
# Anthropic answers 529 when it is overloaded; the gateway's full engine queue is that.
OVERLOADED = {"engine_busy": 529}


class MessagesEndpoint:
    """``POST /v1/messages``: streamed events or one message, per ``stream``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.chatgate
        try:
            raw = await read_body(receive)
            call, request = await _admit(scope, state, raw)
        except APIError as exc:
            await send_error(send, exc)
            return
        except ClientGone:
            return  # left while sending the body: nothing was started
        scope["state"]["ratelimit_headers"] = call.admission.headers if call.admission else None
        translator = MessageTranslator(call.model.id, call.prompt_estimate, request.stop_sequences)
        try:
            with DisconnectWatch(receive):
                await _answer(call, translator, send, request.stream)
        except ClientGone:
            # Nobody reads it: the status is for the access log.
            await send({"type": "http.response.start", "status": 499, "headers": []})
            await send({"type": "http.response.body", "body": b""})


class CountTokensEndpoint:
    """``POST /v1/messages/count_tokens``: no generation, so no usage row and no limits;
    ``X-Token-Count-Source`` says whether the engine's tokenizer counted or the gateway
    estimated."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.chatgate
        try:
            raw = await read_body(receive)
            scope["state"]["identity"] = await _identify(scope, state)
            request = parse(CountTokensRequest, asgi.json_body(raw))
            model = state.registry.resolve(request.model)
            tools = translate.tool_fields(request).get("tools")
            messages = translate.to_chat_messages(request)
        except APIError as exc:
            await send_error(send, exc)
            return
        except ClientGone:
            return
        tokens, source = await count_tokens(
            state.engines, state.registry.usable(model), messages, tools
        )
        headers = [(b"x-token-count-source", source.encode())]
        await send_json(send, 200, {"input_tokens": tokens}, headers)


async def _admit(
    scope: Scope, state: AppState, raw: bytes
) -> tuple[service.RelayCall, MessagesRequest]:
    """Identify, parse, translate, plan and admit, or raise the APIError to send (a
    refused request still leaves its usage row)."""
    identity = await _identify(scope, state)
    scope["state"]["identity"] = identity
    request_id: str = scope["state"]["request_id"]
    body = asgi.json_body(raw)
    try:
        request = parse(MessagesRequest, body)
        # The chat route's plan: model resolution, availability, engine call, estimate.
        call = service.plan(state, identity, request_id, "v1.chat", translate.to_chat_body(request))
        call.route = ROUTE
        call.admission = admission = await state.limits.admit(identity)
        call.engine.ticket = call.engine.ticket.classed(admission.priority, admission.weight)
    except APIError as exc:
        await state.usage.record(service.rejected_row(identity, request_id, ROUTE, body, exc))
        raise
    return call, request


async def _identify(scope: Scope, state: AppState) -> Identity:
    """An API key from ``x-api-key`` (what the Anthropic SDKs send) or ``Authorization:
    Bearer`` (their ``auth_token``, and every other chatgate client)."""
    key = asgi.header(scope, b"x-api-key")
    authorization = f"Bearer {key}" if key else asgi.header(scope, b"authorization")
    client = scope.get("client")
    return await identify(
        state, authorization, scope["path"], scope["method"], client[0] if client else ""
    )


async def _answer(
    call: service.RelayCall, translator: MessageTranslator, send: Send, streaming: bool
) -> None:
    stats = translator.stats
    started = False
    try:
        async with call.state.upstreams.stream(call.engine) as upstream:
            # Closed on the way out: a client that left queues its cancelled row at once.
            async with aclosing(_events(call, translator, upstream)) as events:
                if streaming:
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
        await send_error(send, await service.refused(call, stats, exc))
        return
    except asyncio.CancelledError:  # the client left (or the server is stopping)
        service.record_cancelled(call, stats)
        raise
    await _send_message(translator, send)


async def _send_message(translator: MessageTranslator, send: Send) -> None:
    """The non-streamed answer, or the error that ended its engine stream."""
    outcome = translator.outcome
    if outcome is not None:
        await send_error(send, outcome)
        return
    usage = translator.usage
    await send_json(send, 200, translator.message(*usage), [])


async def _events(
    call: service.RelayCall, translator: MessageTranslator, upstream: Upstream
) -> AsyncGenerator[bytes, None]:
    """The events of one answer (``asgi.translated``: the usage row is handed to the writer
    before the last events). The outcome is left on the translator."""
    yield encode(translator.start())
    async with aclosing(asgi.translated(call, translator, upstream)) as batches:
        async for events in batches:
            yield encode(events)
    if translator.outcome is not None:
        yield encode([error_event(translator.outcome.status_code, translator.outcome.message)])
    else:
        yield encode(translator.finish(*translator.usage))


async def send_error(send: Send, exc: APIError) -> None:
    """An error in Anthropic's shape, with the gateway's headers (Retry-After, limits)."""
    status = OVERLOADED.get(exc.code, exc.status_code)
    headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    await send_json(send, status, translate.error_body(status, exc.message), headers)

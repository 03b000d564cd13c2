"""``POST /v1/embeddings`` as a raw ASGI endpoint, on the machinery of the chat relay.

Identification, the limits (requests, tokens), the fair queue and failover of
``Upstreams`` and one usage row per request are the chat route's (``openai_api.service``);
only the engine call differs: one JSON answer (``Upstreams.fetch``), as engines do not
stream embeddings. Nothing reaches the client before the answer is complete, so every
engine fault may be retried on another replica, and a client that leaves closes the
engine connection (llama.cpp then drops the queued inputs).

Only models whose profile declares ``embeddings:`` are routed here (``ModelRegistry.
resolve_embeddings``); the embedded SmolLM2 serves them from the same llama-server that
chats (``engines/runtime/embedded.py`` says why one process). A model may also be embedding-only
(``task: embed``, e.g. vLLM started as a pooling model): it is routed here like any other
and refused by every generating route. Tokens come from the engine's ``usage``; completion
tokens are 0.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send

from chatgate.deps import identify
from chatgate.engines.admission.pool import Ticket
from chatgate.engines.upstream.client import EngineError
from chatgate.engines.upstream.failover import EngineCall
from chatgate.engines.upstream.registry import ModelEntry
from chatgate.engines.upstream.stream import StreamStats
from chatgate.engines.upstream.tokenize import count_text, within_limit
from chatgate.errors import APIError
from chatgate.middleware import send_json
from chatgate.openai_api import asgi, service
from chatgate.openai_api.asgi import send_error
from chatgate.openai_api.disconnect import ClientGone, DisconnectWatch, read_body
from chatgate.openai_api.embeddings_request import (
    EmbeddingsRequest,
    bytes_bound,
    engine_payload,
    engine_prompt_tokens,
    parse_request,
    response,
    too_long,
    vectors,
)
from chatgate.state import AppState

ROUTE = "v1.embeddings"
ENGINE_PATH = "/embeddings"


class EmbeddingsEndpoint:
    """``POST /v1/embeddings``: vectors for a string, strings, or token ids."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.chatgate
        request_state = scope.setdefault("state", {})
        try:
            raw = await read_body(receive)
            call, request = await _admit(scope, state, raw)
        except APIError as exc:
            await send_error(send, exc)
            return
        except ClientGone:
            return  # left while sending the body: nothing was started
        request_state["ratelimit_headers"] = call.admission.headers if call.admission else None
        try:
            with DisconnectWatch(receive):
                await _answer(call, request, send)
        except ClientGone:
            # Nobody reads it: the status is for the access log.
            await send({"type": "http.response.start", "status": 499, "headers": []})
            await send({"type": "http.response.body", "body": b""})


async def _admit(
    scope: Scope, state: AppState, raw: bytes
) -> tuple[service.RelayCall, EmbeddingsRequest]:
    """Identify, check, route and admit, or raise the APIError to send (a request refused
    once its sender is known still leaves its usage row)."""
    client = scope.get("client")
    identity = await identify(
        state,
        asgi.header(scope, b"authorization"),
        scope["path"],
        scope["method"],
        client[0] if client else "",
    )
    scope["state"]["identity"] = identity
    request_id: str = scope["state"]["request_id"]
    body: Any = None
    try:
        body = asgi.json_body(raw)
        request = parse_request(body, state.settings.max_prompt_chars)
        model = state.registry.resolve_embeddings(request.model)
        state.registry.ensure_available(model)  # refused before any limit is charged
        assert model.embeddings is not None  # resolve_embeddings made sure
        payload = engine_payload(request, model.embeddings)
        await _check_lengths(state, model, request)
        engine = EngineCall(
            model, ENGINE_PATH, payload, request_id, Ticket(f"user:{identity.user_id}", "api")
        )
        call = service.RelayCall(
            state=state,
            identity=identity,
            route=ROUTE,
            engine=engine,
            client_wants_usage=False,
            prompt_estimate=request.prompt_estimate,
        )
        call.admission = admission = await state.limits.admit(identity)
        engine.ticket = engine.ticket.classed(admission.priority, admission.weight)
    except APIError as exc:
        await state.usage.record(service.rejected_row(identity, request_id, ROUTE, body, exc))
        raise
    return call, request


async def _check_lengths(state: AppState, model: ModelEntry, request: EmbeddingsRequest) -> None:
    """A 400 naming the input that is longer than the model embeds, before any engine
    works on it: llama.cpp answers one with a 500, which would count against the replica
    and fail over. Token ids are counted here; a text only when its bytes could be too
    many tokens, by the engine's tokenizer (not counted if it cannot: the engine decides)."""
    assert model.embeddings is not None
    limit = model.embeddings.max_input_tokens
    endpoints = state.registry.usable(model)
    for param, item in request.inputs():
        if isinstance(item, list):
            tokens: int | None = len(item)
        elif bytes_bound(item) <= limit or not endpoints:
            continue
        else:
            counting = count_text(state.upstreams.client, endpoints[0], item, special=True)
            tokens = await within_limit(endpoints[0], counting)
        if tokens is not None and tokens > limit:
            raise too_long(param, tokens, limit)


async def _answer(call: service.RelayCall, request: EmbeddingsRequest, send: Send) -> None:
    """Ask the engines (queue, failover), check the vectors, account, answer."""
    stats = StreamStats()
    try:
        data = await call.state.upstreams.fetch(call.engine)
        found = vectors(data, request.count)
    except (EngineError, APIError) as exc:
        await send_error(send, await service.refused(call, stats, exc))
        return
    except asyncio.CancelledError:  # the client left (or the server is stopping)
        service.record_cancelled(call, stats)
        raise
    tokens = engine_prompt_tokens(data)
    stats.prompt_tokens = tokens if tokens is not None else request.prompt_estimate
    stats.completion_tokens = 0
    await service.record(call, service.row(call, stats, "ok", 200))
    body = response(call.model.id, found, request.encoding_format, stats.prompt_tokens)
    await send_json(send, 200, body, [])

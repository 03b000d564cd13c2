"""``POST /v1/chat/completions`` and ``POST /v1/completions`` as raw ASGI endpoints.

The gateway's hottest path skips what FastAPI adds per request: dependency solving,
validating the body into a copy, and ``StreamingResponse``'s task group with its
disconnect listener (bench/README.md has the before/after numbers). Everything around
it stays: the middlewares (request id, security headers, body cap, access log, CORS,
tracing), one error shape, the same identification as every other route.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send

from chatgate.deps import identify
from chatgate.engines.upstream.client import EngineError
from chatgate.engines.upstream.stream import StreamStats
from chatgate.errors import APIError
from chatgate.middleware import USAGE_LOGGED, send_json
from chatgate.openai_api import asgi, service
from chatgate.openai_api.asgi import send_error
from chatgate.openai_api.disconnect import ClientGone, DisconnectWatch, read_body
from chatgate.state import AppState

_SSE_START_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class RelayEndpoint:
    """One of the two relayed routes (``route``: "v1.chat" or "v1.completions")."""

    def __init__(self, route: str) -> None:
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: AppState = scope["app"].state.chatgate
        request_state = scope.setdefault("state", {})
        try:
            raw = await read_body(receive)
            call = await self._admit(scope, state, raw)
        except APIError as exc:
            await send_error(send, exc)
            return
        except ClientGone:
            return  # left while sending the body: nobody to answer, nothing was started
        request_state["ratelimit_headers"] = call.admission.headers if call.admission else None
        request_state[USAGE_LOGGED] = True  # every way on records (and logs) one usage row
        try:
            with DisconnectWatch(receive):
                if call.payload.get("stream"):
                    await _stream(call, send)
                else:
                    await _complete(call, send)
        except ClientGone:
            # Nobody reads it: the status is for the access log.
            await send({"type": "http.response.start", "status": 499, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    async def _admit(self, scope: Scope, state: AppState, raw: bytes) -> service.RelayCall:
        """Identify, parse, validate, plan and admit the request, or raise the APIError
        to send (a body is judged only once its sender is known)."""
        request_state = scope["state"]
        identity = await identify(
            state,
            asgi.header(scope, b"authorization"),
            scope["path"],
            scope["method"],
            scope["client"][0] if scope.get("client") else "",
        )
        request_state["identity"] = identity
        request_id: str = request_state["request_id"]
        body: Any = asgi.json_body(raw)
        try:
            payload = service.validate_body(body, self.route, state)
            call = service.plan(state, identity, request_id, self.route, payload)
            call.admission = admission = await state.limits.admit(identity)
            call.engine.ticket = call.engine.ticket.classed(admission.priority, admission.weight)
        except APIError as exc:
            # Refused before the engine was called: still one usage row per request.
            row = service.rejected_row(identity, request_id, self.route, body, exc)
            await state.usage.record(row)
            request_state[USAGE_LOGGED] = True
            raise
        return call


async def _complete(call: service.RelayCall, send: Send) -> None:
    try:
        data = await service.complete(call)
    except APIError as exc:
        await send_error(send, exc)
        return
    await send_json(send, 200, data, [])


async def _stream(call: service.RelayCall, send: Send) -> None:
    gaps = call.state.metrics.token_gap_observer(call.model.id)
    stats = StreamStats(on_gap=gaps, choices=call.choices)
    started = False
    try:
        async with call.state.upstreams.stream(call.engine) as upstream:
            await send({"type": "http.response.start", "status": 200,
                        "headers": _SSE_START_HEADERS})  # fmt: skip
            started = True
            chunks = service.relay_stream(call, upstream, stats)
            try:
                async for chunk in chunks:
                    last = isinstance(chunk, service.FinalChunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            finally:
                # A client that left mid-stream: closing the relay queues the cancelled
                # usage row; leaving the block aborts the engine's generation.
                await chunks.aclose()
    except (EngineError, APIError) as exc:
        if started:
            raise  # the relay turned engine errors into events: this is a bug, let it show
        await send_error(send, await service.refused(call, stats, exc))
    except asyncio.CancelledError:  # the client left (or the server is stopping)
        service.record_cancelled(call, stats)
        raise

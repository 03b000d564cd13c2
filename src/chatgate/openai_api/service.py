"""The OpenAI-compatible relay: validate, map the model, pass the rest through, account.

Streams are relayed line by line as they arrive; a client that disconnects makes
the handler close the engine connection at once, which aborts the generation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from chatgate.auth.identity import Identity
from chatgate.engines.client import DONE_LINE, EngineError, parse_data_line
from chatgate.engines.endpoint import Endpoint
from chatgate.engines.failover import Upstream, Upstreams
from chatgate.engines.registry import ModelEntry
from chatgate.engines.routing import v1_affinity_key
from chatgate.engines.stream import StreamStats, estimate_prompt_tokens, estimate_text_tokens
from chatgate.errors import APIError, error_body
from chatgate.limits.service import Admission
from chatgate.state import AppState
from chatgate.usage.record import UsageRecord

log = logging.getLogger("chatgate.v1")

# Only the gateway decides where a request goes and how it is accounted.
_GATEWAY_OWNED = ("model",)


class FinalChunk(bytes):
    """The last piece of a relayed stream (error event, usage, ``[DONE]``): the response
    body can end in the same write."""


@dataclass
class RelayCall:
    state: AppState
    identity: Identity
    request_id: str
    route: str  # "v1.chat" | "v1.completions"
    path: str  # "/chat/completions" | "/completions"
    model: ModelEntry
    payload: dict[str, Any]  # without "model": each replica gets its own engine name
    client_wants_usage: bool
    prompt_estimate: int
    affinity_key: str | None = None
    engine: str | None = None  # the replica tried last: the one that served, in the end
    accounted: bool = False  # its one usage row was handed to the writer
    admission: Admission | None = None  # limits held until its usage row is recorded

    def upstreams(self) -> Upstreams:
        def attempted(endpoint: Endpoint) -> None:
            self.engine = endpoint.name

        state = self.state
        return Upstreams(state.registry, state.engines, state.metrics, on_attempt=attempted)


def validate_body(body: Any, route: str, state: AppState) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object", "invalid_body")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise APIError(400, "'model' is required", "missing_model", param="model")
    settings = state.settings
    if route == "v1.chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise APIError(
                400, "'messages' must be a non-empty list", "invalid_messages", param="messages"
            )
        if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
            raise APIError(
                400, "every message needs a 'role'", "invalid_messages", param="messages"
            )
        if len(messages) > settings.max_messages:
            raise APIError(
                400,
                f"At most {settings.max_messages} messages are allowed",
                "too_many_messages",
                param="messages",
            )
    elif not isinstance(body.get("prompt"), str | list):
        raise APIError(400, "'prompt' is required", "invalid_prompt", param="prompt")
    if len(orjson.dumps(body.get("messages") or body.get("prompt"))) > settings.max_prompt_chars:
        raise APIError(400, "The prompt is too long", "prompt_too_long")
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise APIError(400, f"'{name}' must be a positive integer", "invalid_value", param=name)
        if isinstance(value, int) and value > settings.max_tokens_cap:
            raise APIError(
                400,
                f"'{name}' may be at most {settings.max_tokens_cap}",
                "max_tokens_too_large",
                param=name,
            )
    return body


def plan(
    state: AppState, identity: Identity, request_id: str, route: str, body: dict[str, Any]
) -> RelayCall:
    model = state.registry.resolve(body["model"])
    state.registry.ensure_available(model)  # refused before any limit is charged
    payload = {k: v for k, v in body.items() if k not in _GATEWAY_OWNED}
    options = payload.get("stream_options")
    wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    if payload.get("stream"):
        payload["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    prompt = body.get("messages") if route == "v1.chat" else [{"content": body.get("prompt")}]
    return RelayCall(
        state=state,
        identity=identity,
        request_id=request_id,
        route=route,
        path="/chat/completions" if route == "v1.chat" else "/completions",
        model=model,
        payload=payload,
        client_wants_usage=wants_usage,
        prompt_estimate=estimate_prompt_tokens(prompt or []),
        affinity_key=v1_affinity_key(body),
    )


def rejected_row(
    identity: Identity, request_id: str, route: str, body: Any, exc: APIError
) -> UsageRecord:
    """The usage row of a request refused before any engine was called."""
    model = body.get("model") if isinstance(body, dict) else None
    return UsageRecord(
        request_id=request_id,
        route=route,
        status="rejected",
        status_code=exc.status_code,
        user_id=identity.user_id,
        api_key_id=identity.api_key_id,
        model=model[:128] if isinstance(model, str) and model else None,
        error=f"{exc.code}: {exc.message}"[:1000],
    )


def usage_row(
    call: RelayCall, stats: StreamStats, status: str, code: int, error: str | None = None
) -> UsageRecord:
    return UsageRecord(
        request_id=call.request_id,
        route=call.route,
        status=status,
        status_code=code,
        user_id=call.identity.user_id,
        api_key_id=call.identity.api_key_id,
        model=call.model.id,
        engine=call.engine,
        prompt_tokens=stats.input_tokens(call.prompt_estimate),
        completion_tokens=stats.output_tokens(),
        ttft_ms=stats.ttft_ms,
        latency_ms=stats.latency_ms(),
        finish_reason=stats.finish_reason,
        error=error,
    )


async def open_upstream(call: RelayCall, stats: StreamStats) -> Upstream:
    """Open the engine stream (failing over while nothing was sent); failures before any
    byte are accounted and re-raised."""
    try:
        return await call.upstreams().stream(
            call.model, call.path, call.payload, call.request_id, call.affinity_key
        )
    except EngineError as exc:
        await _record(call, usage_row(call, stats, "error", exc.status_code, exc.message))
        raise APIError(exc.status_code, exc.message, exc.code) from exc
    except APIError as exc:  # no replica left that could take it
        await _record(call, usage_row(call, stats, "error", exc.status_code, exc.message))
        raise


async def complete(call: RelayCall) -> dict[str, Any]:
    """A non-streamed answer; cancelled (the client left), the engine request is aborted."""
    stats = StreamStats()
    try:
        _endpoint, data = await call.upstreams().fetch(
            call.model, call.path, call.payload, call.request_id, call.affinity_key
        )
    except EngineError as exc:
        await _record(call, usage_row(call, stats, "error", exc.status_code, exc.message))
        raise APIError(exc.status_code, exc.message, exc.code) from exc
    except APIError as exc:
        await _record(call, usage_row(call, stats, "error", exc.status_code, exc.message))
        raise
    except asyncio.CancelledError:
        record_cancelled(call, stats)
        raise
    stats.observe({"usage": data.get("usage")})
    choices = data.get("choices") or [{}]
    stats.finish_reason = choices[0].get("finish_reason")
    if stats.completion_tokens is None:
        # No usage from the engine: estimate from the answer rather than count zero.
        stats.completion_tokens = estimate_text_tokens(_answer_text(choices))
    data["model"] = call.model.id
    await _record(call, usage_row(call, stats, "ok", 200))
    return data


async def relay_stream(
    call: RelayCall, upstream: Upstream, stats: StreamStats
) -> AsyncGenerator[bytes, None]:
    """SSE bytes for the client; the usage row is committed before ``[DONE]``, and the
    last piece, a ``FinalChunk``, carries it.

    Only content is yielded while the outcome is open; the error event (if any) comes
    after the row was handed to the writer, so a client that leaves at any point cannot
    make the row go missing. From here on nothing is retried: the client has content.
    """
    status, code = "cancelled", 499
    error: str | None = "client disconnected"
    error_event: bytes | None = None
    call.state.metrics.active_streams.inc()
    batches = upstream.batches()
    try:
        async for batch in batches:
            # One write per network read of the engine, not one per event.
            out = b"".join([piece for line in batch if (piece := _translate(call, line, stats))])
            if out:
                yield out
        status, code, error = "ok", 200, None
        if stats.finish_reason is None:
            status, code = "error", 502
            error = "The engine ended the stream unexpectedly"
            error_event = _error_event(error, "engine_disconnected")
    except EngineError as exc:
        status, code, error = "error", exc.status_code, exc.message
        error_event = _error_event(exc.message, exc.code)
        call.upstreams().failed(upstream.endpoint, exc)
    except Exception as exc:
        status, code, error = "error", 500, f"internal error ({type(exc).__name__})"
        raise
    finally:
        if status == "ok":
            upstream.response.release()
        else:
            upstream.response.close()  # closing the connection aborts the engine's generation
        upstream.endpoint.outstanding -= 1
        call.state.metrics.active_streams.dec()
        if status == "cancelled" or code == 500:
            # The client is gone (or the relay broke): nothing awaits the row, so queue it.
            _record_nowait(call, usage_row(call, stats, status, code, error))
        await batches.aclose()  # last: the bookkeeping above must not wait on it
    row = usage_row(call, stats, status, code, error)
    await _record(call, row)
    tail = [error_event or b""]
    if call.client_wants_usage and stats.prompt_tokens is None and status == "ok":
        tail.append(_usage_event(call, row))  # the engine sent none (llama.cpp): our count
    yield FinalChunk(b"".join([*tail, DONE_LINE, b"\n\n"]))


def record_cancelled(call: RelayCall, stats: StreamStats) -> None:
    """Account a request whose client left (unless its row is already on its way)."""
    _record_nowait(call, usage_row(call, stats, "cancelled", 499, "client disconnected"))


async def _record(call: RelayCall, row: UsageRecord) -> None:
    call.accounted = True
    _finish_admission(call, row)
    await call.state.usage.record(row)


def _record_nowait(call: RelayCall, row: UsageRecord) -> None:
    if not call.accounted:
        call.accounted = True
        _finish_admission(call, row)
        call.state.usage.record_nowait(row)


def _finish_admission(call: RelayCall, row: UsageRecord) -> None:
    # Every call ends in exactly one usage row: the one place to free its stream slot
    # and charge its tokens.
    if call.admission is not None:
        call.state.limits.finish_nowait(call.admission, row.prompt_tokens + row.completion_tokens)
        call.admission = None


def _answer_text(choices: list[Any]) -> str:
    parts: list[str] = []
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else choice.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


def _translate(call: RelayCall, line: bytes, stats: StreamStats) -> bytes | None:
    if line == DONE_LINE:
        return None  # sent by relay_stream once the usage row is committed
    chunk = parse_data_line(line)
    if chunk is None:
        return line + b"\n\n" if line.startswith(b":") else None
    stats.observe(chunk)
    if not chunk.get("choices") and chunk.get("usage") and not call.client_wants_usage:
        return None
    if chunk.get("model") != call.model.id:
        chunk["model"] = call.model.id
        return b"data: " + orjson.dumps(chunk) + b"\n\n"
    return line + b"\n\n"


def _usage_event(call: RelayCall, row: UsageRecord) -> bytes:
    chunk: dict[str, Any] = {
        "id": f"chatcmpl-{call.request_id}",
        "object": "chat.completion.chunk" if call.route == "v1.chat" else "text_completion",
        "created": int(time.time()),
        "model": call.model.id,
        "choices": [],
        "usage": {
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "total_tokens": row.prompt_tokens + row.completion_tokens,
        },
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _error_event(message: str, code: str) -> bytes:
    return b"data: " + orjson.dumps(error_body("engine_error", message, code)) + b"\n\n"

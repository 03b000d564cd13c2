"""The OpenAI-compatible relay: validate, map the model, pass the rest through, account.

Streams are relayed line by line as they arrive; a client that disconnects makes
the handler close the engine connection at once, which aborts the generation.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import orjson

from chatgate.auth.identity import Identity
from chatgate.chat.service import default_max_tokens
from chatgate.engines.admission.pool import Ticket
from chatgate.engines.catalog.profiles import engine_kind
from chatgate.engines.upstream.client import DONE_LINE, EngineError, clean_message, parse_data_line
from chatgate.engines.upstream.failover import ChunkAdapter, EngineCall, Upstream
from chatgate.engines.upstream.forced_tools import enforce
from chatgate.engines.upstream.registry import ModelEntry
from chatgate.engines.upstream.routing import v1_affinity_key
from chatgate.engines.upstream.stream import StreamStats, estimate_prompt_tokens
from chatgate.engines.upstream.tokenize import fill_counts
from chatgate.errors import APIError, error_body
from chatgate.limits.service import Admission
from chatgate.openai_api.aggregate import Aggregate, answer_texts
from chatgate.openai_api.validation import invalid, validate_request
from chatgate.settings import Settings
from chatgate.shutdown import ServerShuttingDown
from chatgate.state import AppState
from chatgate.usage.outbox import GATEWAY_LOST
from chatgate.usage.record import UsageRecord, usage_row

log = logging.getLogger("chatgate.v1")

# Only the gateway decides where a request goes and how it is accounted.
_GATEWAY_OWNED = ("model",)


class FinalChunk(bytes):
    """The last piece of a relayed stream (error event, usage, ``[DONE]``): the response
    body can end in the same write."""


@dataclass
class RelayCall:
    """One /v1 request: its engine call plus what the route adds (the client's dialect,
    its limits, its one usage row)."""

    state: AppState
    identity: Identity
    route: str  # "v1.chat" | "v1.completions"
    engine: EngineCall
    client_wants_usage: bool
    prompt_estimate: int
    accounted: bool = False  # its one usage row was handed to the writer
    admission: Admission | None = None  # limits held until its usage row is recorded
    record_key: str | None = None  # a stream's row key: its progress is journaled under it
    choices: int = 1  # answers asked for (``n``), each from the same engine request
    usage_chunk: dict[str, Any] | None = None  # the engine's last usage report, held back

    @property
    def model(self) -> ModelEntry:
        return self.engine.model

    @property
    def request_id(self) -> str:
        return self.engine.request_id

    @property
    def payload(self) -> dict[str, Any]:
        return self.engine.payload


def validate_body(body: Any, route: str, state: AppState) -> dict[str, Any]:
    """The request body once it is one the engines can take (openai_api.validation)."""
    return validate_request(body, route, state.settings)


def plan(
    state: AppState, identity: Identity, request_id: str, route: str, body: dict[str, Any]
) -> RelayCall:
    model = state.registry.resolve(body["model"])
    state.registry.ensure_available(model)  # refused before any limit is charged
    choices = _choices(body, model)
    payload = {k: v for k, v in body.items() if k not in _GATEWAY_OWNED}
    _bound_answer(payload, route, model, state.settings)
    options = payload.get("stream_options")
    wants_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    if payload.get("stream"):
        payload["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    prompt = body.get("messages") if route == "v1.chat" else [{"content": body.get("prompt")}]
    engine = EngineCall(
        model,
        "/chat/completions" if route == "v1.chat" else "/completions",
        payload,
        request_id,
        Ticket(f"user:{identity.user_id}", "api", slots=choices),  # n answers hold n slots
        v1_affinity_key(body),
        adapter=_forced_tools(state, model, route, payload),
    )
    return RelayCall(
        state=state,
        identity=identity,
        route=route,
        engine=engine,
        client_wants_usage=wants_usage,
        prompt_estimate=estimate_prompt_tokens(prompt or []),
        choices=choices,
    )


def _forced_tools(
    state: AppState, model: ModelEntry, route: str, payload: dict[str, Any]
) -> ChunkAdapter | None:
    """A forced tool call the engine cannot make itself is enforced by the gateway, here,
    for every dialect (all plan their engine request here): engines/upstream/forced_tools."""
    if route != "v1.chat":
        return None
    return enforce(payload, engine_kind(model.profile_id or model.id, state.manager.profiles))


def _choices(body: dict[str, Any], model: ModelEntry) -> int:
    """``n``, when every replica can generate that many answers of one request at once.

    llama-server and vLLM both answer ``n`` from one request, each answer in a slot of
    its own: llama-server refuses more than its parallel slots (vLLM has no such limit
    below its ``max_num_seqs``). Rather than a request that fails on some replicas and
    not on others, the limit is said up front, naming ``n``; no answer is ever silently
    dropped (a request is never cut to one choice)."""
    wanted = body.get("n")
    choices = wanted if isinstance(wanted, int) and wanted > 1 else 1
    slots = [ep.capacity for ep in model.endpoints if ep.capacity]
    if slots and choices > min(slots):
        raise invalid(
            f"'n' may be at most {min(slots)} for the model '{model.id}' (its engine "
            "generates that many answers of one request at once)",
            "n",
        )
    return choices


# OpenAI's default for the legacy completions API (vLLM's too); llama.cpp's is "no limit".
LEGACY_COMPLETIONS_MAX_TOKENS = 16


def _bound_answer(
    payload: dict[str, Any], route: str, model: ModelEntry, settings: Settings
) -> None:
    """Every request gets a length limit the engine understands: ``max_completion_tokens``
    (what newer clients, LangChain among them, send) becomes ``max_tokens`` (all engines
    read it; llama.cpp reads nothing else), and a request with neither gets the model's
    default, so no client can keep an engine generating without end."""
    if payload.get("max_tokens") is None:
        if payload.get("max_completion_tokens") is not None:
            payload["max_tokens"] = payload["max_completion_tokens"]
        elif route == "v1.completions":
            payload["max_tokens"] = LEGACY_COMPLETIONS_MAX_TOKENS
        else:
            payload["max_tokens"] = default_max_tokens(model, settings)


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


def row(
    call: RelayCall, stats: StreamStats, status: str, code: int, error: str | None = None
) -> UsageRecord:
    usage = usage_row(
        call.engine,
        call.identity,
        call.route,
        stats,
        status=status,
        status_code=code,
        error=error,
        prompt_estimate=call.prompt_estimate,
    )
    usage.record_key = call.record_key
    return usage


async def refused(call: RelayCall, stats: StreamStats, exc: EngineError | APIError) -> APIError:
    """Account a request no engine answered (all replicas failed, or none could take it)
    and say so to the client."""
    if isinstance(exc, ServerShuttingDown):  # still queued or opening at the drain deadline
        await record(call, row(call, stats, "interrupted", exc.status_code, exc.message))
        return APIError(exc.status_code, exc.message, exc.code, headers=exc.retry_after)
    await record(call, row(call, stats, "error", exc.status_code, exc.message))
    if isinstance(exc, EngineError):
        return APIError(exc.status_code, exc.message, exc.code)
    return exc


async def complete(call: RelayCall) -> dict[str, Any]:
    """A non-streamed answer, put together from a streamed engine request (``aggregate``):
    a client that leaves aborts the engine's work, and the usage is the engine's own."""
    stats = StreamStats(choices=call.choices)
    answer = Aggregate(call.route != "v1.completions", call.model.id, call.request_id)
    call.engine.payload.update(stream=True, stream_options={"include_usage": True})
    try:
        async with call.state.upstreams.stream(call.engine) as upstream:
            async for batch in upstream.batches():
                for line in batch:
                    if (chunk := parse_data_line(line)) is not None:
                        stats.observe(chunk)
                        answer.add(chunk)
        if stats.finish_reason is None:
            raise EngineError("The engine ended the answer unexpectedly", "engine_disconnected")
        data = answer.response()
        await count_missing(call, stats, answer_texts(data["choices"]))
    except (EngineError, APIError) as exc:
        raise await refused(call, stats, exc) from exc
    except asyncio.CancelledError:
        record_cancelled(call, stats)
        raise
    final = row(call, stats, "ok", 200)
    await record(call, final)
    # The usage the row holds: the engine's (several answers' reports added up), else
    # counted with its tokenizer.
    data["usage"] = {**(data.get("usage") or {}), **_usage(final)}
    return data


async def count_missing(call: RelayCall, stats: StreamStats, texts: list[str]) -> None:
    """What the engine did not report (an attached server without usage), counted by its
    tokenizer: the stream and the answer of the same prompt still count the same."""
    if stats.has_usage:
        return
    endpoint = next((e for e in call.model.endpoints if e.name == call.engine.engine), None)
    await fill_counts(call.state.engines, endpoint, call.engine.path, call.payload, stats, texts)


async def relay_stream(
    call: RelayCall, upstream: Upstream, stats: StreamStats
) -> AsyncGenerator[bytes, None]:
    """SSE bytes for the client; the usage row is committed before ``[DONE]``, and the
    last piece, a ``FinalChunk``, carries it.

    Only content is yielded while the outcome is open; the error event (if any) comes
    after the row was handed to the writer, so a client that leaves at any point cannot
    make the row go missing. From here on nothing is retried: the client has content.
    The stream's owner (``Upstreams.stream``) releases or aborts the engine request.
    """
    status, code = "cancelled", 499
    error: str | None = "client disconnected"
    error_event: bytes | None = None
    _track_progress(call, stats)
    try:
        async for batch in upstream.batches():
            # One write per network read of the engine, not one per event.
            out = b"".join([piece for line in batch if (piece := _translate(call, line, stats))])
            if out:
                yield out
        status, code, error = "ok", 200, None
        if stats.finish_reason is None:
            status, code = "error", 502
            error = "The engine ended the stream unexpectedly"
            error_event = _error_event(error, "engine_disconnected")
    except ServerShuttingDown as exc:  # cut short at the drain deadline: not the client's doing
        status, code, error = "interrupted", exc.status_code, exc.message
        error_event = _error_event(exc.message, exc.code)
    except EngineError as exc:
        status, code, error = "error", exc.status_code, exc.message
        error_event = _error_event(exc.message, exc.code)
    except Exception as exc:
        status, code, error = "error", 500, f"internal error ({type(exc).__name__})"
        raise
    finally:
        if status == "cancelled" or code == 500:
            # The client is gone (or the relay broke): nothing awaits the row, so queue it.
            record_nowait(call, row(call, stats, status, code, error))
    if status == "ok":
        await count_missing(call, stats, stats.texts())
    final = row(call, stats, status, code, error)
    await record(call, final)
    tail = [error_event or b""]
    if call.client_wants_usage and status == "ok":
        # One usage chunk, with the row's counts: the engine's report as it was sent, or
        # several answers' reports added up, or the tokenizer's count.
        tail.append(_usage_event(call, final, call.usage_chunk))
    yield FinalChunk(b"".join([*tail, DONE_LINE, b"\n\n"]))


def _track_progress(call: RelayCall, stats: StreamStats) -> None:
    """While it streams, the journal keeps this request's row as it stands (every 2 s, not
    per token): if the gateway is killed, the tokens already sent are still billed."""
    call.record_key = f"v1:{secrets.token_hex(16)}"
    call.state.outbox.track(
        call.record_key, lambda: row(call, stats, "interrupted", 503, GATEWAY_LOST)
    )


def record_cancelled(call: RelayCall, stats: StreamStats) -> None:
    """Account a request whose client left (unless its row is already on its way)."""
    record_nowait(call, row(call, stats, "cancelled", 499, "client disconnected"))


async def record(call: RelayCall, row: UsageRecord) -> None:
    call.accounted = True
    _finish_admission(call, row)
    _untrack(call)
    await call.state.usage.record(row)


def record_nowait(call: RelayCall, row: UsageRecord) -> None:
    if not call.accounted:
        call.accounted = True
        _finish_admission(call, row)
        _untrack(call)
        call.state.usage.record_nowait(row)


def _untrack(call: RelayCall) -> None:
    if call.record_key is not None:
        call.state.outbox.untrack(call.record_key)


def _finish_admission(call: RelayCall, row: UsageRecord) -> None:
    # Every call ends in exactly one usage row: the one place to free its stream slot
    # and charge its tokens.
    if call.admission is not None:
        call.state.limits.finish_nowait(call.admission, row.prompt_tokens + row.completion_tokens)
        call.admission = None


def _translate(call: RelayCall, line: bytes, stats: StreamStats) -> bytes | None:
    if line == DONE_LINE:
        return None  # sent by relay_stream once the usage row is committed
    chunk = parse_data_line(line)
    if chunk is None:
        return line + b"\n\n" if line.startswith(b":") else None
    stats.observe(chunk)
    if not chunk.get("choices") and isinstance(chunk.get("usage"), dict):
        # Usage reports wait for the end: with several answers llama-server sends one per
        # answer, and the client gets one with them added up (``_usage_event``).
        call.usage_chunk = chunk
        return None
    error = chunk.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        error["message"] = clean_message(error["message"])  # an engine's mid-stream error
    elif chunk.get("model") == call.model.id:
        return line + b"\n\n"
    chunk["model"] = call.model.id
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _usage(row: UsageRecord) -> dict[str, int]:
    return {
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "total_tokens": row.prompt_tokens + row.completion_tokens,
    }


def _usage_event(call: RelayCall, row: UsageRecord, reported: dict[str, Any] | None) -> bytes:
    """The stream's one usage chunk: the engine's own (its id, fingerprint, timings) with
    the row's counts, or one of the gateway's when the engine sent none."""
    chunk: dict[str, Any] = reported or {
        "id": f"chatcmpl-{call.request_id}",
        "object": "chat.completion.chunk" if call.route == "v1.chat" else "text_completion",
        "created": int(time.time()),
        "choices": [],
    }
    engine_usage = chunk.get("usage")
    chunk["model"] = call.model.id
    chunk["usage"] = {**(engine_usage if isinstance(engine_usage, dict) else {}), **_usage(row)}
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _error_event(message: str, code: str) -> bytes:
    return b"data: " + orjson.dumps(error_body("engine_error", message, code)) + b"\n\n"

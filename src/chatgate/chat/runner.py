"""Runs one web-chat generation: engine stream → numbered SSE events → one final save.

The usage row and the assistant message are committed before the closing
``usage``/``done`` events are published, so a client that saw ``done`` can rely
on both being stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from chatgate.chat import titles
from chatgate.chat.answers import FinalAnswer, record_key
from chatgate.chat.checkpoints import Checkpoints
from chatgate.chat.service import ChatJob
from chatgate.engines.admission.pool import Ticket
from chatgate.engines.upstream.client import EngineError, parse_data_line
from chatgate.engines.upstream.failover import EngineCall, Upstream
from chatgate.engines.upstream.stream import StreamStats, estimate_prompt_tokens
from chatgate.engines.upstream.tokenize import fill_counts
from chatgate.errors import APIError, error_body
from chatgate.shutdown import SHUTTING_DOWN, ServerShuttingDown
from chatgate.state import AppState
from chatgate.usage.record import usage_row

log = logging.getLogger("chatgate.chat")


@dataclass
class Outcome:
    status: str = "complete"  # complete | interrupted | error
    error_code: str | None = None
    error_message: str | None = None
    status_code: int = 200


async def run(state: AppState, job: ChatJob) -> None:
    stats = StreamStats(on_gap=state.metrics.token_gap_observer(job.model.id))
    call = engine_call(job)
    try:
        outcome = await _relay(state, job, call, stats)
    except asyncio.CancelledError:
        outcome = Outcome("interrupted", "stopped", "The answer was stopped", 499)
    except ServerShuttingDown as exc:  # the drain deadline: saved as far as it got
        outcome = Outcome("interrupted", exc.code, exc.message, exc.status_code)
    except EngineError as exc:
        log.warning("generation %s failed: %s", job.generation.id, exc.message)
        outcome = Outcome("error", exc.code, exc.message, exc.status_code)
    except APIError as exc:  # no replica could take it, or the queue is full
        outcome = Outcome("error", exc.code, exc.message, exc.status_code)
    except Exception as exc:  # never leave a client without a terminal event
        log.exception("generation %s crashed", job.generation.id)
        outcome = Outcome("error", "internal_error", f"Internal error ({type(exc).__name__})", 500)
    # Shielded: a second cancellation (shutdown) must not lose the final save.
    await asyncio.shield(_finish(state, job, call, stats, outcome))


def engine_call(job: ChatJob) -> EngineCall:
    """A web chat is interactive: it goes before API traffic in the engine queue; while it
    waits, the client hears how many requests are ahead of it."""

    def waiting(ahead: int) -> None:
        job.generation.publish("queue", {"position": ahead, "model": job.model.id})

    payload: dict[str, Any] = {
        **job.params,
        "messages": job.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    ticket = Ticket(job.tenant, "interactive", job.weight, on_position=waiting)
    return EngineCall(
        job.model, "/chat/completions", payload, job.request_id, ticket, job.conversation_id
    )


async def _relay(state: AppState, job: ChatJob, call: EngineCall, stats: StreamStats) -> Outcome:
    checkpoints = Checkpoints(
        state.outbox,
        job.assistant_message_id,
        stats,
        estimate_prompt_tokens(job.messages),
        heartbeat=state.settings.answer_lease_seconds / 4,
        renew=lambda: state.generations.bus.renew(job.conversation_id, job.generation.id),
    )
    # Failover happens in here, before anything was published to the client.
    async with checkpoints, state.upstreams.stream(call) as upstream:
        await _publish(job, upstream, stats)
    if stats.finish_reason is None:
        return Outcome(
            "error", "engine_disconnected", "The engine ended the answer unexpectedly", 502
        )
    return Outcome()


async def _publish(job: ChatJob, upstream: Upstream, stats: StreamStats) -> None:
    """Per network read: every chunk published, then (with Redis) one XADD for all."""
    async with contextlib.aclosing(upstream.batches()) as batches:
        async for batch in batches:
            for line in batch:
                chunk = parse_data_line(line)
                if chunk is None:
                    continue
                stats.observe(chunk)
                if chunk.get("choices"):
                    chunk["model"] = job.model.id
                    job.generation.publish(None, chunk)


async def _finish(
    state: AppState,
    job: ChatJob,
    call: EngineCall,
    stats: StreamStats,
    outcome: Outcome,
) -> None:
    generation = job.generation
    if outcome.status == "complete":
        await _count_missing(state, call, stats)
    prompt_tokens = stats.input_tokens(estimate_prompt_tokens(job.messages))
    completion_tokens = stats.output_tokens()
    outcome = await _save(state, job, call, stats, outcome, prompt_tokens)
    if job.admission is not None:
        await state.limits.finish(job.admission, prompt_tokens + completion_tokens)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "ttft_ms": stats.ttft_ms,
        "latency_ms": stats.latency_ms(),
    }
    # Before `done`: a client that saw it may start the next turn on any replica at once.
    await state.generations.bus.release(job.conversation_id, generation.id)
    generation.publish("usage", usage)
    if outcome.status == "error" or outcome.error_code == SHUTTING_DOWN:
        body = error_body("engine_error", outcome.error_message or "", outcome.error_code or "")
        generation.publish("error", body)
    generation.publish(
        "done",
        {
            "status": outcome.status,
            "finish_reason": stats.finish_reason,
            "message_id": job.assistant_message_id,
            "conversation_id": job.conversation_id,
        },
    )
    generation.finish()
    if job.needs_title and outcome.status == "complete":
        titles.schedule(state, job, stats.text)


async def _count_missing(state: AppState, call: EngineCall, stats: StreamStats) -> None:
    """An engine that reported no usage (llama.cpp and vLLM always do): its tokenizer
    counts, as for ``/v1``, so the web chat and the API bill the same prompt alike."""
    if not stats.has_usage:
        endpoint = next((e for e in call.model.endpoints if e.name == call.engine), None)
        await fill_counts(state.engines, endpoint, call.path, call.payload, stats, [stats.text])


async def _save(
    state: AppState,
    job: ChatJob,
    call: EngineCall,
    stats: StreamStats,
    outcome: Outcome,
    prompt_tokens: int,
) -> Outcome:
    """The answer and its usage row: saved, or journaled while the database is away
    (either way kept); the outcome to tell the client."""
    answer = FinalAnswer(
        message_id=job.assistant_message_id,
        conversation_id=job.conversation_id,
        content=stats.text,
        status=outcome.status,
        token_in=prompt_tokens,
        token_out=stats.output_tokens(),
        finish_reason=stats.finish_reason,
        error=outcome.error_message if outcome.status != "complete" else None,
    )
    row = usage_row(
        call,
        job.identity,
        "chat",
        stats,
        status={"complete": "ok"}.get(outcome.status, outcome.status),
        status_code=outcome.status_code,
        error=outcome.error_message,
        prompt_estimate=prompt_tokens,
    )
    row.record_key = record_key(job.assistant_message_id)
    try:
        await state.outbox.save_answer(answer)
        await state.usage.record(row)
    except Exception:
        log.exception("saving generation %s failed", job.generation.id)
        return Outcome("error", "storage_error", "The answer could not be saved", 503)
    return outcome

"""``/v1``: chat completions, completions, models."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import StreamingResponse

from chatgate.deps import CurrentUser, StateDep
from chatgate.engines.stream import StreamStats
from chatgate.errors import APIError
from chatgate.middleware import request_id_of
from chatgate.openai_api import service

router = APIRouter(prefix="/v1", tags=["openai"])

# Answers that start within this need no disconnect-watcher task.
WATCH_AFTER_SECONDS = 0.05
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _handle(
    route: str, body: Any, request: Request, identity: CurrentUser, state: StateDep
) -> Response:
    request_id = request_id_of(request)
    try:
        payload = service.validate_body(body, route, state)
        call = service.plan(state, identity, request_id, route, payload)
        call.admission = await state.limits.admit(identity)
    except APIError as exc:
        # Refused before the engine was called: still one usage row per request.
        await state.usage.record(service.rejected_row(identity, request_id, route, body, exc))
        raise
    request.state.ratelimit_headers = call.admission.headers
    if not payload.get("stream"):
        complete = asyncio.ensure_future(service.complete(call))
        if not await _finished_unless_disconnected(request, complete):
            return Response(status_code=499)  # nobody is listening any more
        return Response(orjson.dumps(complete.result()), media_type="application/json")
    stats = StreamStats(on_gap=state.metrics.token_gap_observer(call.model.id))
    opening = asyncio.ensure_future(service.open_upstream(call, stats))
    if not await _finished_unless_disconnected(request, opening):
        service.record_cancelled(call, stats)
        return Response(status_code=499)
    upstream = opening.result()
    return StreamingResponse(
        service.relay_stream(call, upstream, stats),
        media_type="text/event-stream",
        headers=_SSE_HEADERS,
    )


async def _finished_unless_disconnected(request: Request, work: asyncio.Future[Any]) -> bool:
    """Wait for ``work``; if the client disconnects first, cancel it and return False.

    The server does not cancel a handler whose client left, so a non-streamed request
    watches for the disconnect itself: cancelling closes the engine connection, which
    aborts the generation (SPEC 8). Most answers take a few milliseconds to start: only
    a slower one gets a watcher task (a client leaving is seen at most that much later).
    """
    try:
        await asyncio.wait({work}, timeout=WATCH_AFTER_SECONDS)
    except asyncio.CancelledError:
        work.cancel()
        raise
    if work.done():
        return True
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        work.cancel()
        raise
    finally:
        watcher.cancel()
    if work.done():
        return True
    work.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await work
    return False


async def _disconnected(request: Request) -> None:
    # The body was read already: the next message is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    request: Request,
    identity: CurrentUser,
    state: StateDep,
    body: dict[str, Any] = Body(...),  # noqa: B008 - raw JSON: unknown params pass through
) -> Response:
    return await _handle("v1.chat", body, request, identity, state)


@router.post("/completions", response_model=None)
async def completions(
    request: Request,
    identity: CurrentUser,
    state: StateDep,
    body: dict[str, Any] = Body(...),  # noqa: B008
) -> Response:
    return await _handle("v1.completions", body, request, identity, state)


@router.get("/models")
async def list_models(_identity: CurrentUser, state: StateDep) -> dict[str, Any]:
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": m.id, "object": "model", "created": created, "owned_by": m.owned_by}
            for m in state.registry.models()
        ],
    }


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, _identity: CurrentUser, state: StateDep) -> dict[str, Any]:
    entry = state.registry.lookup(model_id)  # still listed while it is being switched
    if entry.id != model_id and model_id not in entry.aliases:
        raise APIError(404, f"The model '{model_id}' does not exist", "model_not_found")
    return {
        "id": entry.id,
        "object": "model",
        "created": int(time.time()),
        "owned_by": entry.owned_by,
    }

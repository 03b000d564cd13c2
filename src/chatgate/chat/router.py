"""``/api/chat``: start a generation, reattach to it, stop it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from chatgate.api_route import GatewayRoute
from chatgate.chat import runner, service
from chatgate.chat.bus import Followable
from chatgate.chat.schemas import ChatRequest, StopResponse
from chatgate.deps import CurrentUser, StateDep
from chatgate.errors import APIError
from chatgate.middleware import request_id_of
from chatgate.openapi_responses import SIGNED_IN, errors

router = APIRouter(prefix="/api/chat", tags=["chat"], responses=SIGNED_IN, route_class=GatewayRoute)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(generation: Followable, after: int) -> StreamingResponse:
    headers = {**SSE_HEADERS, "X-Generation-ID": generation.id}
    return StreamingResponse(
        generation.stream(after), media_type="text/event-stream", headers=headers
    )


@router.post("", response_class=StreamingResponse, responses=errors(400, 404, 409, 413, 429, 503))
async def chat(
    body: ChatRequest, request: Request, identity: CurrentUser, state: StateDep
) -> StreamingResponse:
    """Stream an answer as SSE; the generation runs on even if this connection drops."""
    admission = await state.limits.admit(identity)
    request.state.ratelimit_headers = admission.headers
    try:
        job = await service.prepare(state, identity, body, request_id_of(request))
    except BaseException:
        await state.limits.finish(admission, 0)
        raise
    job.admission = admission
    job.weight = admission.weight  # web chat waits as "interactive" whatever the class
    state.generations.bus.attach(job.generation, job.assistant_message_id)  # Redis: mirrored
    job.generation.publish("conversation", job.events)
    state.generations.launch(job.generation, runner.run(state, job))
    return _sse(job.generation, 0)


def _last_event_id(header: str | None, query: int | None) -> int:
    if query is not None:
        return query
    if header is None or not header.strip():
        return 0
    try:
        return max(0, int(header.strip()))
    except ValueError as exc:
        raise APIError(400, "Last-Event-ID must be an integer", "invalid_event_id") from exc


@router.get(
    "/{generation_id}/stream", response_class=StreamingResponse, responses=errors(400, 404, 503)
)
async def resume(
    generation_id: str,
    identity: CurrentUser,
    state: StateDep,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> StreamingResponse:
    """Reattach: events after ``Last-Event-ID`` (or ``?after=``), then live ones; with
    Redis on any replica of the fleet."""
    generation = await state.generations.find(generation_id, identity.user_id)
    return _sse(generation, _last_event_id(last_event_id, after))


@router.post("/{generation_id}/stop", responses=errors(404, 503))
async def stop(generation_id: str, identity: CurrentUser, state: StateDep) -> StopResponse:
    """Stop it here, or (with Redis) ask the replica that runs it over the fleet channel."""
    stopped = await state.generations.stop(generation_id, identity.user_id)
    return StopResponse(generation_id=generation_id, stopped=stopped)

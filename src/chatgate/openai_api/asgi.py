"""What the raw ASGI endpoints of every dialect share (``/v1/chat/completions``,
``/v1/embeddings``, ``/v1/responses``, ``/v1/messages``): reading a header and a JSON
body, sending an error, and relaying a translated engine stream with its one usage row."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, Generic, Protocol, TypeVar

import orjson
from starlette.types import Scope, Send

from chatgate.engines.upstream.client import DONE_LINE, EngineError, parse_data_line
from chatgate.engines.upstream.failover import Upstream
from chatgate.engines.upstream.stream import StreamStats
from chatgate.errors import APIError
from chatgate.middleware import send_json
from chatgate.openai_api import service
from chatgate.shutdown import SHUTTING_DOWN

EventT = TypeVar("EventT")


def header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def json_body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        message = f"The request body is not valid JSON ({exc})"
        raise APIError(400, message, "invalid_request") from exc


async def send_error(send: Send, exc: APIError) -> None:
    """The gateway's (OpenAI's) error shape, with its headers (Retry-After, limits)."""
    headers = [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    await send_json(send, exc.status_code, exc.body(), headers)


class Translator(Protocol, Generic[EventT]):
    """Turns engine chat chunks into one dialect's events (anthropic_api, responses_api)."""

    stats: StreamStats
    usage: tuple[int, int]  # (input, output) tokens, as in the usage row
    outcome: APIError | None  # how the engine stream failed, if it did

    def feed(self, chunk: dict[str, Any]) -> list[EventT]: ...


async def translated(
    call: service.RelayCall, translator: Translator[EventT], upstream: Upstream
) -> AsyncGenerator[list[EventT], None]:
    """The dialect's events of one engine stream, one list per engine read. When it ends,
    the usage row is handed to the writer (before the caller's last events, so a client
    that leaves at any point cannot make it go missing, as ``service.relay_stream`` does
    for chat completions), and ``translator.usage`` and ``outcome`` are set. Nothing is
    retried from here on: the client may have content."""
    stats = translator.stats
    finished = False
    try:
        async for batch in upstream.batches():
            events: list[EventT] = []
            for line in batch:
                chunk = parse_data_line(line) if line != DONE_LINE else None
                if chunk is not None:
                    events += translator.feed(chunk)
            if events:
                yield events
        if stats.finish_reason is None:
            translator.outcome = APIError(
                502, "The engine ended the stream unexpectedly", "engine_disconnected"
            )
    except EngineError as exc:  # ServerShuttingDown too: cut short at the drain deadline
        translator.outcome = APIError(exc.status_code, exc.message, exc.code)
    except Exception as exc:
        service.record_nowait(
            call, service.row(call, stats, "error", 500, f"internal error ({exc!r})")
        )
        raise
    else:
        finished = True
    finally:
        if not finished and translator.outcome is None:  # the client left: queue the row
            service.record_cancelled(call, stats)
    row = service.row(call, stats, *row_status(translator.outcome))
    await service.record(call, row)
    translator.usage = (row.prompt_tokens, row.completion_tokens)


def row_status(failure: APIError | None) -> tuple[str, int, str | None]:
    """(status, status code, error) of the usage row of an answer that ended ``failure``."""
    if failure is None:
        return "ok", 200, None
    status = "interrupted" if failure.code == SHUTTING_DOWN else "error"
    return status, failure.status_code, failure.message

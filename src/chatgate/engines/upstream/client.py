"""The one shared HTTP client to engines (aiohttp: measured ~4x httpx for relaying streams).

Timeouts are separate on purpose: connect, time to first token, and idle time
between chunks; each failure becomes an ``EngineError`` with a clear message.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncGenerator, Callable
from typing import Any

import aiohttp
import orjson
from opentelemetry.propagate import inject
from opentelemetry.trace import Tracer

from chatgate.engines.upstream.endpoint import Endpoint, Timeouts
from chatgate.observability.tracing import engine_span

log = logging.getLogger("chatgate.engines")

DONE_LINE = b"data: [DONE]"
# How a reused connection that the server closed meanwhile fails before any answer (a
# refused new connection, ClientConnectorError, is a ClientOSError too, but not stale).
STALE_CONNECTION = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
KEEPALIVE_SECONDS = 4.0  # below llama-server's 5 s, so we close idle connections first
# One SSE line may be large (logprobs, an echoed prompt); aiohttp's default cap is 512 KiB.
MAX_LINE_BYTES = 16 * 1024 * 1024


def engine_request_id(request_id: str) -> str:
    """The request id as the engine gets it: a UUID.

    llama-cpp-python answers 400 to any other ``X-Request-ID``; a client's own id is
    mapped to a stable UUID (uuid5), so engine logs still correlate with it.
    """
    try:
        uuid.UUID(request_id)
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, "chatgate:" + request_id))
    return request_id


class EngineError(Exception):
    """The engine failed; ``code`` is machine-readable, the message is for users."""

    def __init__(self, message: str, code: str = "engine_error", status_code: int = 502) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code
        self.engine: str | None = None  # the endpoint that failed, once failover knows it


class EngineClient:
    def __init__(
        self,
        timeouts: Timeouts,
        max_connections: int = 1000,
        on_headers: Callable[[str, float], None] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer
        self.timeouts = timeouts
        self._on_headers = on_headers  # (endpoint name, seconds until the engine answered)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def timeouts_for(self, endpoint: Endpoint | None) -> Timeouts:
        if endpoint is not None and endpoint.timeouts is not None:
            return endpoint.timeouts
        return self.timeouts

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, limit_per_host=0, keepalive_timeout=KEEPALIVE_SECONDS
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeouts.connect)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("EngineClient.start() was not called")
        return self._session

    async def open(
        self, endpoint: Endpoint, path: str, payload: dict[str, Any], request_id: str
    ) -> aiohttp.ClientResponse:
        """POST to the engine and return the response once its headers arrived (status 200)."""
        headers = {
            "Content-Type": "application/json",
            "X-Request-ID": engine_request_id(request_id),
        }
        attributes = {
            "chatgate.engine": endpoint.name,
            "server.address": endpoint.root_url,
            "gen_ai.request.model": str(payload.get("model")),
            "chatgate.request_id": request_id,
        }
        with engine_span(self._tracer, f"POST {path}", attributes) as span:
            if self._tracer is not None:
                inject(headers)  # traceparent: the engine's spans join this trace
            response = await self._post(endpoint, endpoint.base_url + path, payload, headers)
            span.set_attribute("http.response.status_code", response.status)
            return response

    async def _post(
        self, endpoint: Endpoint, url: str, payload: dict[str, Any], headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        started = time.perf_counter()
        timeouts = self.timeouts_for(endpoint)
        # The session's connect timeout is the default; a replica may have its own.
        extra: dict[str, Any] = {}
        if endpoint.timeouts is not None:
            extra["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)
        body = orjson.dumps(payload)
        try:
            async with asyncio.timeout(timeouts.first_token):
                try:
                    response = await self.session.post(url, data=body, headers=headers, **extra)
                except STALE_CONNECTION as exc:
                    if isinstance(exc, aiohttp.ClientConnectorError):
                        raise  # a new connection was refused: the engine is down
                    # A pooled keep-alive connection the engine had just closed (llama-server
                    # closes idle ones after 5 s): nothing was processed, so one retry on a
                    # fresh connection is safe. A dead engine fails it again, at once.
                    log.debug("engine %s: retrying on a fresh connection (%r)", endpoint.name, exc)
                    response = await self.session.post(url, data=body, headers=headers, **extra)
        except TimeoutError as exc:
            raise EngineError(
                f"The engine did not answer within {timeouts.first_token:g}s",
                "engine_timeout",
                504,
            ) from exc
        except aiohttp.ClientError as exc:
            log.warning("engine %s unreachable: %r", endpoint.name, exc)
            raise EngineError(
                f"The engine for this model is unreachable ({type(exc).__name__})",
                "engine_unavailable",
                503,
            ) from exc
        if self._on_headers is not None:
            self._on_headers(endpoint.name, time.perf_counter() - started)
        if response.status != 200:
            await _raise_for_upstream_status(endpoint, response)
        return response

    async def line_batches(
        self, response: aiohttp.ClientResponse, endpoint: Endpoint | None = None
    ) -> AsyncGenerator[list[bytes], None]:
        """Non-empty SSE lines from a streaming response, as many as have arrived per read
        (one batch per network read: relaying them in one write is what keeps up with the
        engine), with time-to-first-token and idle timeouts."""
        timeouts = self.timeouts_for(endpoint)
        limit = timeouts.first_token
        reader = response.content
        pending = b""
        while True:
            try:
                async with asyncio.timeout(limit):
                    data = await reader.readany()
            except TimeoutError as exc:
                raise EngineError(
                    f"The engine sent nothing for {limit:g}s", "engine_timeout", 504
                ) from exc
            except aiohttp.ClientError as exc:
                # aiohttp drops what it had buffered once the connection broke; the events
                # the engine sent before it died are still part of the answer.
                salvaged = _buffered_lines(reader, pending)
                if salvaged:
                    yield salvaged
                raise EngineError(
                    f"The engine connection broke mid-stream ({type(exc).__name__})",
                    "engine_disconnected",
                ) from exc
            if not data:  # the end: a last line may lack its newline
                tail = pending.rstrip(b"\r\n")
                if tail:
                    yield [tail]
                return
            complete, _, pending = (pending + data).rpartition(b"\n")
            if len(pending) > MAX_LINE_BYTES:
                raise EngineError(
                    f"The engine sent an event over {MAX_LINE_BYTES} bytes", "engine_bad_response"
                )
            batch = _split_lines(complete)
            if batch:
                limit = timeouts.idle
                yield batch

    async def lines(
        self, response: aiohttp.ClientResponse, endpoint: Endpoint | None = None
    ) -> AsyncGenerator[bytes, None]:
        """The same lines one by one."""
        batches = self.line_batches(response, endpoint)
        try:
            async for batch in batches:
                for line in batch:
                    yield line
        finally:
            await batches.aclose()

    async def read_json(
        self, response: aiohttp.ClientResponse, endpoint: Endpoint | None = None
    ) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self.timeouts_for(endpoint).first_token):
                body = await response.read()
        except TimeoutError as exc:
            raise EngineError("The engine did not finish in time", "engine_timeout", 504) from exc
        except aiohttp.ClientError as exc:
            raise EngineError(
                f"The engine connection broke ({type(exc).__name__})", "engine_disconnected"
            ) from exc
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise EngineError("The engine sent invalid JSON", "engine_bad_response") from exc
        if not isinstance(data, dict):
            raise EngineError("The engine sent an unexpected response", "engine_bad_response")
        return data


async def _raise_for_upstream_status(endpoint: Endpoint, response: aiohttp.ClientResponse) -> None:
    try:
        async with asyncio.timeout(5):
            body = await response.read()
    except (TimeoutError, aiohttp.ClientError):
        body = b""
    finally:
        response.release()
    message = clean_message(_upstream_message(body) or f"HTTP {response.status}")
    log.warning("engine %s answered %s: %s", endpoint.name, response.status, body[:500])
    if response.status in (401, 403, 404):
        # The gateway's own engine configuration is wrong (credentials, model name):
        # nothing the client could fix, and it must not look like the client's bad key.
        raise EngineError(f"The engine refused the gateway: {message}", "engine_misconfigured")
    if 400 <= response.status < 500:
        # The engine rejected the request itself (e.g. too long for its context): the
        # client can fix it, so pass the engine's reason on with the same status.
        raise EngineError(message, "engine_rejected", response.status)
    raise EngineError(f"The engine failed: {message}", "engine_error", 502)


# What an engine's message may carry that is nobody's business outside the gateway:
# file-system paths (llama-cpp-python put its site-packages path in a 4xx), source files
# with line numbers, and Python tracebacks.
_PATH = re.compile(
    r"(?<![\w/.])(?:[A-Za-z]:\\|/(?=[\w.~-]+/))"  # a drive, or a root with a folder in it
    r"[\w.~+@-]+(?:[/\\][\w.~+@-]+)*[/\\]?(?::\d+)*"  # its parts, and a :line:column
)
_SOURCE = re.compile(r"\b[\w.-]+\.(?:py|pyx|c|cc|cpp|cxx|h|hpp|cu|rs|go)(?::\d+)*\b")
_TRACEBACK = re.compile(r"\s*Traceback \(most recent call last\).*", re.DOTALL)
_URL_PATH = re.compile(r"/v\d+/[\w/.-]*$")  # an API route named in a message: not a file


def clean_message(message: str) -> str:
    """An engine's message as a client may see it: its reason, without paths, source
    locations or tracebacks (the full text is in the gateway's log)."""
    message = _TRACEBACK.sub("", message)
    message = _PATH.sub(_path_or_route, message)
    message = _SOURCE.sub("<source>", message)
    return message.strip() or "The engine refused the request"


def _path_or_route(match: re.Match[str]) -> str:
    return match.group(0) if _URL_PATH.fullmatch(match.group(0)) else "<path>"


def _split_lines(data: bytes) -> list[bytes]:
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.rstrip(b"\r")]


def _buffered_lines(reader: aiohttp.StreamReader, pending: bytes = b"") -> list[bytes]:
    """Complete, non-empty lines still buffered in a reader that failed (aiohttp internals:
    nothing public reads past the error; a missing attribute just means nothing salvaged),
    after ``pending``, the start of a line already read."""
    buffer = getattr(reader, "_buffer", None) or []
    offset = getattr(reader, "_buffer_offset", 0)
    data = pending + b"".join(buffer)[offset:]
    complete, _, _partial = data.rpartition(b"\n")
    return _split_lines(complete)


def _upstream_message(body: bytes) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace")[:300] or None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:1000]
        if isinstance(data.get("detail"), str):
            return str(data["detail"])[:1000]
    return None


def parse_data_line(line: bytes) -> dict[str, Any] | None:
    """The JSON object of an SSE ``data:`` line; None for comments, [DONE] and junk."""
    if not line.startswith(b"data:") or line == DONE_LINE:
        return None
    try:
        value = orjson.loads(line[5:])
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None

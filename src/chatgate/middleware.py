"""Pure ASGI middleware: request ids, security headers, body-size cap, access log.

Pure ASGI (not BaseHTTPMiddleware) so streamed bodies pass through untouched and
client disconnects reach the handler at once.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatgate.errors import error_body
from chatgate.shutdown import RETRY_AFTER_SECONDS, SHUTTING_DOWN, SHUTTING_DOWN_REFUSAL, Drain

log = logging.getLogger("chatgate.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
API_CSP = (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'")
# The web UI: its own files only; model output can never run script or load remote content.
SPA_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    b"form-action 'self'; frame-ancestors 'none'",
)
_API_PATHS = ("/api/", "/v1/", "/health", "/metrics")
# Set in a request's scope state by an endpoint whose request logs its usage line
# (observability/logging.py ``log_usage``: request id, user, route, status, latency and
# more): the access line would say the same again. One line per /v1 request instead of
# two cost 7 % of the gateway's CPU at c=32 (bench/README.md).
USAGE_LOGGED = "usage_logged"


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or secrets.token_hex(16))


class BodyTooLarge(Exception):
    pass


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = {"code": 0}
        extra_headers = _response_headers(scope["path"], request_id)

        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _too_large(send, self.max_body_bytes, extra_headers)
            return

        # The body cap may trip while the app reads (chunked uploads declare no length);
        # the app's own answer to that (FastAPI: "error parsing the body") is replaced by 413.
        too_large = {"tripped": False, "answered": False}

        async def send_wrapper(message: Message) -> None:
            if too_large["tripped"]:
                if not too_large["answered"] and message["type"] == "http.response.start":
                    too_large["answered"] = True
                    status["code"] = 413
                    await _too_large(send, self.max_body_bytes, extra_headers)
                return
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    *extra_headers,
                    *_limit_headers(scope),
                ]
            await send(message)

        try:
            await self.app(scope, self._limited(receive, too_large), send_wrapper)
        except BodyTooLarge:
            if not too_large["answered"] and status["code"] == 0:
                too_large["answered"] = True
                status["code"] = 413
                await _too_large(send, self.max_body_bytes, extra_headers)
        except Exception:
            # Unhandled errors are answered by Starlette's outermost middleware, which sits
            # outside this one: answer here so the 500 carries the request id and headers too.
            if status["code"] == 0:
                status["code"] = 500
                await _internal_error(send, extra_headers)
            raise
        finally:
            request_state = scope.get("state", {})
            if not request_state.get(USAGE_LOGGED) or status["code"] >= 500:
                _access_line(scope, request_id, status["code"], started)

    def _limited(self, receive: Receive, too_large: dict[str, bool]) -> Receive:
        received = 0

        async def wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large["tripped"] = True
                    raise BodyTooLarge
            return message

        return wrapper


def _access_line(scope: Scope, request_id: str, status: int, started: float) -> None:
    elapsed_ms = (time.perf_counter() - started) * 1000
    identity = scope.get("state", {}).get("identity")
    log.info(
        "%s %s %s",
        scope["method"],
        scope["path"],
        status,
        extra={
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "status_code": status,
            "latency_ms": round(elapsed_ms, 1),
            "user_id": getattr(identity, "user_id", None),
        },
    )


def _limit_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    """X-RateLimit-* set by the limits check of this request (a 429 carries its own)."""
    headers = scope.get("state", {}).get("ratelimit_headers") or {}
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _VALID_REQUEST_ID.match(candidate) else None
    return None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _response_headers(path: str, request_id: str) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
    if path.startswith(_API_PATHS):
        headers.append(API_CSP)
    elif not path.startswith(_DOCS_PATHS):
        headers.append(SPA_CSP)
    return headers


async def _too_large(send: Send, limit: int, headers: list[tuple[bytes, bytes]]) -> None:
    body = error_body(
        "invalid_request_error", f"Request body exceeds {limit} bytes", "body_too_large"
    )
    await send_json(send, 413, body, headers)


async def _internal_error(send: Send, headers: list[tuple[bytes, bytes]]) -> None:
    body = error_body("api_error", "Internal server error", "internal_error")
    await send_json(send, 500, body, headers)


class DrainGuard:
    """While the gateway drains (SIGTERM, ``shutdown.Drain``), new requests get a 503 at
    once, with Retry-After and Connection: close, so clients and load balancers move on;
    the probes and metrics keep answering. Requests already in flight are not affected, and
    the drain waits for those that change something (``Drain.admitted``), not only for
    those that reached an engine.
    Sits inside ``GatewayMiddleware``, so refusals carry the request id and are logged."""

    ALWAYS_SERVED = frozenset({"/health", "/health/ready", "/metrics"})

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.drain.draining
            and scope["type"] == "http"
            and scope["path"] not in self.ALWAYS_SERVED
        ):
            await _read_body(receive)
            body = error_body("service_unavailable", SHUTTING_DOWN_REFUSAL, SHUTTING_DOWN)
            headers = [
                (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
                (b"connection", b"close"),
            ]
            await send_json(send, 503, body, headers)
            return
        if scope["type"] == "http" and scope["method"] not in ("GET", "HEAD"):
            with self.drain.admitted():  # the drain waits for what it let in
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _read_body(receive: Receive) -> None:
    """Take in what the client still sends before an answer that closes the connection: a
    socket closed with unread data is reset (RST), and a client whose request body was
    still on its way then loses the answer too (a read error instead of the 503). Bounded
    by the body cap of ``GatewayMiddleware``, which wraps this."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    """A whole JSON response, straight to ASGI ``send``."""
    content = orjson.dumps(body)
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            *headers,
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": content})

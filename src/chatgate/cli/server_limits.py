"""HTTP server limits against slow or hostile clients: header size, header-read time,
idle keep-alive, connections at once.

uvicorn's httptools protocol (the one ``uvicorn[standard]`` runs) has neither a cap on
the request head nor a deadline for sending it: a 100 KB header was accepted, and a client
that trickles its headers holds a connection for ever (slowloris). ``h11`` has a size cap
(``h11_max_incomplete_event_size``) but no deadline either, and it is several times slower
on the hot path. So the httptools protocol is kept and given both limits here:

- the request line and headers together may be at most ``max_header_bytes``; more is
  answered ``431 Request Header Fields Too Large`` and the connection closed;
- they must arrive within ``header_timeout_seconds`` of the connection (or of the first
  byte of a later request on it); a client that is slower gets ``408`` and is closed.

Bodies are not timed here (the body cap is the middleware's): nginx's
``client_body_timeout`` covers slow uploads in the shipped deployment.

Past ``max_concurrency`` connections or requests at once, uvicorn answers every new
request itself with a plain-text 503 ("Service Unavailable") that SDKs cannot read and
that says nothing of when to come back. Here that answer is the one error shape (code
``overloaded``) with a ``Retry-After``, so clients back off and retry as for any 503.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial
from typing import Any

from uvicorn._types import ASGI3Application, ASGIReceiveCallable, ASGISendCallable, Scope
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from chatgate.errors import error_body
from chatgate.middleware import send_json
from chatgate.settings import Settings

OVERLOADED_RETRY_SECONDS = 1
_OVERLOADED = error_body(
    "service_unavailable",
    "The server is at its limit of connections at once; retry shortly",
    "overloaded",
)


async def overloaded(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """uvicorn's answer past ``limit_concurrency``, in the one error shape."""
    headers = [(b"retry-after", str(OVERLOADED_RETRY_SECONDS).encode()), (b"connection", b"close")]
    await send_json(send, 503, _OVERLOADED, headers)  # type: ignore[arg-type]


class _HeadTooLarge(Exception):
    """Raised inside a parser callback; httptools wraps it in a parser error."""


@dataclass(frozen=True)
class HeadLimits:
    max_bytes: int = 16 * 1024
    timeout: float = 15.0


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request-head size cap and read deadline."""

    def __init__(self, *args: Any, limits: HeadLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or HeadLimits()
        self._in_head = True  # from a request's first byte (or the connection) to its headers
        self._head_bytes = 0  # bytes received while in the head
        self._parsed_head = 0  # request line and headers parsed so far
        self._head_timer: asyncio.TimerHandle | None = None
        self._begun = False  # a byte of the current request arrived
        self._rejected = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still no end of the head: all that came is head, and may already be too much
        # (checked after parsing, so that one read holding a small head and a body passes).
        if self._in_head and self._head_bytes > self.limits.max_bytes and not self._rejected:
            self._reject(431, "Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a later request on a kept-alive connection
            self._start_head()
        self._begun = True

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_timer()
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if app is service_unavailable:  # past limit_concurrency (see the module's docstring)
            app = overloaded
        super()._start_asgi_task(cycle, app)

    def send_400_response(self, msg: str) -> None:
        # A head found too large while parsing surfaces as a parser error: answer 431.
        if self._rejected:
            self._reject(431, "Request Header Fields Too Large")
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._parsed_head += size
        if self._parsed_head > self.limits.max_bytes:
            self._rejected = True
            raise _HeadTooLarge

    def _start_head(self) -> None:
        self._in_head, self._begun = True, False
        self._head_bytes = self._parsed_head = 0
        self._stop_timer()
        self._head_timer = self.loop.call_later(self.limits.timeout, self._head_timed_out)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self._begun:
            self._reject(408, "Request Timeout")
        else:
            self.transport.close()  # nothing sent at all: nothing to answer

    def _reject(self, status: int, reason: str) -> None:
        """Answer a plain-text error and close (the app never saw this request)."""
        self._rejected = True
        self._stop_timer()
        if self.transport.is_closing():
            return
        body = reason.encode("ascii")
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode("ascii") + body)
        self.transport.close()


def uvicorn_limits(settings: Settings) -> dict[str, Any]:
    """The extra ``uvicorn.run`` / ``uvicorn.Config`` keyword arguments for ``settings``.

    ``http`` is a partial of a module-level class with plain data, so that multi-worker
    serving (which pickles the config for its spawned workers) can carry it."""
    limits = HeadLimits(settings.max_header_bytes, settings.header_timeout_seconds)
    return {
        "http": partial(GuardedHttpToolsProtocol, limits=limits),
        # h11 is not used, but should anyone select it the same cap applies.
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.keep_alive_seconds,
        "limit_concurrency": settings.max_concurrency,
    }

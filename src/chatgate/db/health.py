"""Is the database reachable? One answer per process, told once per outage.

Every path that meets the database (a request's query, the usage writer, the readiness
probe, the journal's replay) reports here. An outage is logged once when it starts and
once when it ends, not as a traceback per request (209 tracebacks in 20 s before this);
requests meanwhile get ``503 database_unavailable`` with ``Retry-After``.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from chatgate.errors import APIError, error_body

log = logging.getLogger("chatgate.db")

RETRY_AFTER_SECONDS = 5
# SQLSTATE classes of a database that is gone, not of a bad query: connection exceptions
# (08), operator intervention such as a shutdown (57P), too many connections (53300).
_OUTAGE_SQLSTATES = ("08", "57P", "53300")
_CONNECTION_ERRORS = {"ConnectionDoesNotExistError", "InterfaceError", "PostgresConnectionError"}
_NETWORK_ERRNOS = frozenset({
    errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE, errno.ETIMEDOUT,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ENOTCONN,
    errno.EADDRNOTAVAIL,
})  # fmt: skip


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) means the database cannot be reached, as
    opposed to a query it refused."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _is_outage_error(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _is_outage_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and _network_error(exc):
        return True
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection came free in time
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(exc.orig, OSError):
            return True
        if "database is locked" in str(exc.orig):  # SQLite: a long writer holds it; retry
            return True
        sqlstate = str(getattr(exc.orig, "sqlstate", "") or "")
        if sqlstate.startswith(_OUTAGE_SQLSTATES):
            return True
        return isinstance(exc, sa_exc.InterfaceError) or _connection_class(exc.orig)
    return False


def _network_error(exc: OSError) -> bool:
    """Refused, reset, unreachable, timed out (asyncpg's connect), or the connect to every
    address of a host failing ("Multiple exceptions", no errno) - not any OSError: a file
    name too long for the file system is no database outage."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror):
        return True
    return exc.errno is None or exc.errno in _NETWORK_ERRNOS


def _connection_class(orig: BaseException | None) -> bool:
    # asyncpg's "connection was closed in the middle of operation" has no SQLSTATE.
    names = {cls.__name__ for cls in type(orig).__mro__} if orig is not None else set()
    return bool(names & _CONNECTION_ERRORS)


def unavailable() -> APIError:
    return APIError(
        503,
        "The database is unavailable; try again in a few seconds",
        "database_unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


class DatabaseHealth:
    """The process's view of the database: down since when, and why."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_change = on_change
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.outages = 0

    @property
    def available(self) -> bool:
        return self.down_since is None

    def down_for(self) -> float:
        return 0.0 if self.down_since is None else self._clock() - self.down_since

    def failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        if self.down_since is None:
            self.down_since = self._clock()
            self.outages += 1
            log.error("database unavailable: %s", self.last_error)
            if self._on_change is not None:
                self._on_change(False)

    def ok(self) -> None:
        if self.down_since is not None:
            log.warning("database available again after %.1f s", self.down_for())
            self.down_since = None
            if self._on_change is not None:
                self._on_change(True)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """SQLAlchemy errors and bare OSErrors (asyncpg's refused connect) that reach the app:
    an outage is a 503 and one log line per outage; anything else is our bug (a 500)."""
    if not is_outage(exc):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        body = error_body("api_error", "Internal server error", "internal_error")
        return JSONResponse(body, status_code=500)
    state = getattr(request.app.state, "chatgate", None)
    health: DatabaseHealth | None = getattr(state, "db_health", None)
    if health is not None:
        health.failed(exc)
    error = unavailable()
    return JSONResponse(error.body(), status_code=503, headers=error.headers)


def install_database_handlers(app: FastAPI) -> None:
    # Handled in Starlette's ExceptionMiddleware: unlike the catch-all Exception handler,
    # nothing is re-raised into the server's log as a traceback.
    for exc_class in (sa_exc.SQLAlchemyError, OSError):
        app.add_exception_handler(exc_class, _database_error)

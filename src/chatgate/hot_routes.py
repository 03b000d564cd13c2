"""The routes that carry the load, dispatched before Starlette's routing.

``POST /v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/responses``
and ``/v1/messages`` are raw ASGI endpoints already (openai_api/endpoint.py and the other
dialects). Between the outer middlewares and them, Starlette and FastAPI
still ran, per request and per chunk sent: ``HeadAsGet``, ``ExceptionMiddleware`` (with a
send wrapper of its own), FastAPI's ``AsyncExitStackMiddleware``, the router matching the
path against every route, the included router's selection and ``Route.handle``. Measured
with py-spy at c=32 against the fast upstream (bench/README.md): 8 % of the event loop's
samples, for no work those routes need.

``HotRoutes`` sits right inside the outer middlewares (request id, security headers, body
cap, access log, drain, tracing, CORS all still apply) and hands an exact method and path
straight to its endpoint. What the skipped layers did that matters is kept: the
exception handlers the app registered (a database outage is still a 503 with
Retry-After), and the ``route``/``endpoint``/``path_params`` scope keys routing sets.
Every other request goes the usual way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette._exception_handler import wrap_app_handling_exceptions
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

# The dialect endpoints that relay engine streams (all raw ASGI, all POST).
HOT_PATHS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
    "/v1/messages",
)


def hot_routes(routes: list[Any], paths: tuple[str, ...]) -> dict[tuple[str, str], Route]:
    """The raw ``Route``s among ``routes`` whose path is in ``paths``, by (method, path)."""
    found: dict[tuple[str, str], Route] = {}
    for route in routes:
        if isinstance(route, Route) and route.path in paths and not route.param_convertors:
            for method in route.methods or ():
                found[(method, route.path)] = route
    return found


class HotRoutes:
    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[tuple[str, str], Route],
        exception_handlers: Mapping[Any, Any],
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        # (handlers by exception class, handlers by status code), as ExceptionMiddleware
        # puts them in the scope for ``wrap_app_handling_exceptions``. The catch-all
        # (``Exception``/500) belongs to ServerErrorMiddleware, outside: left to it.
        handlers = {k: v for k, v in exception_handlers.items() if k not in (Exception, 500)}
        self._handlers = (
            {k: v for k, v in handlers.items() if not isinstance(k, int)},
            {k: v for k, v in handlers.items() if isinstance(k, int)},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._match(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        scope["starlette.exception_handlers"] = self._handlers
        request = Request(scope, receive, send)
        await wrap_app_handling_exceptions(route.app, request)(scope, receive, send)

    def _match(self, scope: Scope) -> Route | None:
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        return self.routes.get((scope["method"], path))

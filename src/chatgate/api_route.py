"""The route class of every FastAPI router: a 405 names every method of its path.

Starlette answers a method a path does not serve from the first route whose path matched,
so ``OPTIONS /api/keys`` said ``Allow: GET`` although ``POST`` is served there too
(RFC 9110 wants all of them). Each operation is its own route in FastAPI; this class
gathers the methods of all routes of the app that match the path.
"""

from __future__ import annotations

from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send


class GatewayRoute(APIRoute):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            allowed = ", ".join(sorted(allowed_methods(scope)))
            raise HTTPException(status_code=405, headers={"Allow": allowed})
        await super().handle(scope, receive, send)


def allowed_methods(scope: Scope) -> set[str]:
    """The methods served at this request's path, by any route of the app."""
    routes: list[BaseRoute] = scope["app"].router.routes
    methods: set[str] = set()
    for route in routes:
        regex = getattr(route, "path_regex", None)
        route_methods = getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(scope["path"]):
            methods.update(route_methods)
    return methods

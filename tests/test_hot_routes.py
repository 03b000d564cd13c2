"""HotRoutes: the hot raw endpoints reached without the router, the app's exception
handlers still applied, every other request routed as before."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from chatgate.hot_routes import HOT_PATHS, HotRoutes, hot_routes


class Outage(Exception):
    pass


class Raw:
    """A raw endpoint that says how it was reached, or raises."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"].endswith("/completions") and scope.get("query_string") == b"fail":
            raise Outage
        route = scope["route"]
        via = "router" if "router" in scope else "hot"  # Starlette's Router sets "router"
        body = f"raw via {via} {route.path}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def outage(_request: Request, _exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "database_unavailable"}, 503, {"retry-after": "5"})


def app() -> Starlette:
    routes = [
        Route("/v1/chat/completions", Raw(), methods=["POST"]),
        Route("/v1/other", Raw(), methods=["POST"]),
        Route("/v1/models", lambda _r: PlainTextResponse("models"), methods=["GET"]),
    ]
    application = Starlette(routes=routes, exception_handlers={Outage: outage})
    application.add_middleware(
        HotRoutes,
        routes=hot_routes(routes, HOT_PATHS),
        exception_handlers=application.exception_handlers,
    )
    return application


def test_only_exact_hot_routes_are_picked() -> None:
    routes = [
        Route("/v1/chat/completions", Raw(), methods=["POST"]),
        Route("/v1/responses/{rid}", Raw(), methods=["GET"]),
        Route("/v1/other", Raw(), methods=["POST"]),
    ]
    assert list(hot_routes(routes, HOT_PATHS)) == [("POST", "/v1/chat/completions")]


async def test_hot_route_is_served_and_others_are_routed() -> None:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        hot = await client.post("/v1/chat/completions")
        assert hot.status_code == 200 and hot.text == "raw via hot /v1/chat/completions"
        other = await client.post("/v1/other")
        assert other.status_code == 200 and other.text == "raw via router /v1/other"
        assert (await client.get("/v1/models")).text == "models"
        # a method the hot route does not serve goes to the router: 405 as before
        assert (await client.get("/v1/chat/completions")).status_code == 405


async def test_exception_handlers_still_apply_on_the_hot_path() -> None:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/v1/chat/completions?fail")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"error": "database_unavailable"}


async def test_root_path_is_stripped_before_matching() -> None:
    transport = httpx.ASGITransport(app=app(), root_path="/gw")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/gw/v1/chat/completions")
    assert response.text == "raw via hot /v1/chat/completions"

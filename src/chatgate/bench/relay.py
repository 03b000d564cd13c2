"""A bare pass-through relay (no auth, no accounting): the ceiling for a Python gateway here."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

HOP_HEADERS = {"content-type", "authorization", "x-request-id"}


def relay_app(upstream: str) -> web.Application:
    """Forward every ``/v1/...`` request to ``upstream`` (a base URL ending with /v1)."""
    base = upstream.rstrip("/").removesuffix("/v1")
    state: dict[str, aiohttp.ClientSession] = {}

    async def session_ctx(_app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=0)
        state["session"] = aiohttp.ClientSession(connector=connector, timeout=None)
        yield
        await state["session"].close()

    async def forward(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() in HOP_HEADERS}
        async with state["session"].request(
            request.method, base + request.path_qs, data=await request.read(), headers=headers
        ) as upstream_response:
            ctype = upstream_response.headers.get("content-type", "application/json")
            response = web.StreamResponse(status=upstream_response.status)
            response.content_type = ctype.split(";")[0]
            await response.prepare(request)
            async for data in upstream_response.content.iter_any():
                await response.write(data)
            await response.write_eof()
            return response

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/v1/{tail:.*}", forward)
    return app


def serve(host: str, port: int, upstream: str) -> None:
    web.run_app(relay_app(upstream), host=host, port=port, access_log=None, print=None)

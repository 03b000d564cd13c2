"""``HEAD`` answered wherever ``GET`` is (RFC 9110: a server that serves GET should serve
HEAD too).

Uptime monitors and load balancers probe with HEAD; FastAPI's routes declare GET only,
so ``HEAD /health`` was a 405 and a healthy gateway read as down. This pure ASGI
middleware runs the GET handler and sends its status and headers without the body.
A streaming GET is told its client left once the headers are out, so it stops.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        # A copy: the middlewares outside (access log, tracing) still see HEAD.
        get_scope = {**scope, "method": "GET"}
        answered = False

        async def send_head(message: Message) -> None:
            nonlocal answered
            if message["type"] != "http.response.body":
                await send(message)
            elif not answered:
                answered = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        async def receive_head() -> Message:
            if answered:
                return {"type": "http.disconnect"}
            return await receive()

        await self.app(get_scope, receive_head, send_head)

"""A fast OpenAI-compatible streaming server: measures a gateway without an engine in the way.

Every chat or text completion streams ``chunks`` content chunks (capped by ``max_tokens``),
``delay_ms`` apart, then a usage chunk when ``stream_options.include_usage`` asks for one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web

MODEL = "fast"


def _chunk(index: int | None, content: str | None, finish: str | None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": MODEL,
        "choices": [] if index is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


TOKEN = " tok"
_TOKEN_EVENT = _sse(_chunk(0, TOKEN, None))
_FINISH_EVENT = _sse(_chunk(0, None, "length"))


def _prompt_tokens(body: dict[str, Any]) -> int:
    messages = body.get("messages") or []
    text = " ".join(str(m.get("content", "")) for m in messages) or str(body.get("prompt", ""))
    return len(text.split())


class FastUpstream:
    def __init__(self, chunks: int = 16, delay_ms: float = 0.0) -> None:
        self.chunks = chunks
        self.delay = delay_ms / 1000.0
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/health", self.health)
        app.router.add_post("/v1/chat/completions", self.complete)
        app.router.add_post("/v1/completions", self.complete)
        return app

    async def health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def models(self, _request: web.Request) -> web.Response:
        data = [{"id": MODEL, "object": "model", "created": 0, "owned_by": "bench"}]
        return web.json_response({"object": "list", "data": data})

    def _count(self, body: dict[str, Any]) -> int:
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        return min(self.chunks, int(limit)) if limit else self.chunks

    async def complete(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = orjson.loads(await request.read())
        count = self._count(body)
        usage = {
            "prompt_tokens": _prompt_tokens(body),
            "completion_tokens": count,
            "total_tokens": _prompt_tokens(body) + count,
        }
        if not body.get("stream"):
            message = {"role": "assistant", "content": TOKEN * count}
            answer = {
                "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()),
                "model": MODEL, "usage": usage,
                "choices": [{"index": 0, "message": message, "finish_reason": "length"}],
            }  # fmt: skip
            return web.json_response(answer)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(count):
            if self.delay:
                await asyncio.sleep(self.delay)
            await response.write(_TOKEN_EVENT)
        tail = _FINISH_EVENT
        if (body.get("stream_options") or {}).get("include_usage"):
            tail += _sse({**_chunk(None, None, None), "usage": usage})
        await response.write(tail + b"data: [DONE]\n\n")
        await response.write_eof()
        return response


async def start(
    host: str = "127.0.0.1", port: int = 0, chunks: int = 16, delay_ms: float = 0.0
) -> tuple[web.AppRunner, int]:
    """Serve in the running loop; returns the runner (``await runner.cleanup()``) and the port."""
    runner = web.AppRunner(FastUpstream(chunks, delay_ms).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    server = site._server  # noqa: SLF001 - the port the OS chose
    assert isinstance(server, asyncio.base_events.Server) and server.sockets
    return runner, int(server.sockets[0].getsockname()[1])


def serve(host: str, port: int, chunks: int, delay_ms: float) -> None:
    """Serve in the foreground until interrupted."""
    app = FastUpstream(chunks, delay_ms).app()
    web.run_app(app, host=host, port=port, access_log=None, print=None, backlog=1024)

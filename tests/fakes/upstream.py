"""A fast, scriptable fake OpenAI-compatible engine for deterministic gateway tests.

The last user message may carry directives that shape the answer, e.g.
``[[chunks=50 delay=0.05]]``, ``[[crash_after=3]]``, ``[[first_token_delay=2]]``,
``[[status=500]]``, ``[[no_usage]]``, ``[[no_finish]]``, ``[[echo]]``, ``[[role_first]]`` (an
empty role chunk first, as vLLM and llama.cpp send), ``[[reset]]`` (drop the connection
before any header), ``[[tool_call=NAME]]`` (a streamed call of tool NAME, its arguments in
two pieces, finish_reason ``tool_calls``). ``forced`` directives apply to every request of
one instance (one failing replica of two). Every request is recorded, and a stream the
client abandons is recorded as an abort (with its time). ``/health`` answers 404 unless
``health_status`` is set (llama-cpp-python has none); ``/metrics`` serves ``metrics_text``
or 404; ``POST /tokenize`` (vLLM's) answers only while ``tokenize`` is set. ``POST /v1/embeddings``
answers ``embedding_dims``-long vectors derived from each input (equal inputs, equal
vectors), one prompt token per word or token id; an input carrying ``[[status=N]]``,
``[[no_usage]]``, ``[[delay=S]]`` or ``[[wrong_count]]`` (one vector too few) shapes it.
With ``embedding_only`` it is a pooling engine: no generation (404), probed by an embedding.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from chatgate.engines.upstream.client import engine_request_id
from chatgate.engines.upstream.health import PROBE_HEADER

_DIRECTIVE = re.compile(r"\[\[([^\]]*)\]\]")
DEFAULT_WORDS = ["Paris", " is", " the", " capital", " of", " France", "."]
# Also: a payload ``n`` streams that many choices; ``[[usage_per_answer]]`` (usage_reports);
# ``[[leak]]`` with ``[[status=N]]`` fails with this message, internals and all.
LEAKY_MESSAGE = (
    'Invalid schema: File "/srv/engine/lib/python3.11/site-packages/llama_cpp/server/app.py",'
    " line 12 (server-common.cpp:1270)\nTraceback (most recent call last):\n  boom"
)


@dataclass
class Recorded:
    request_id: str | None
    path: str
    payload: dict[str, Any]
    started: float
    finished: float | None = None
    aborted_at: float | None = None
    chunks_sent: int = 0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class FakeUpstream:
    model: str = "fake-model"
    requests: list[Recorded] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0
    forced: dict[str, str] = field(default_factory=dict)  # directives for every request
    health_status: int | None = None  # None: no /health route (404)
    metrics_text: str | None = None  # None: no /metrics route (404)
    scrapes: int = 0  # GET /metrics calls
    probes: int = 0  # the gateway's 1-token generation probes (not in ``requests``)
    # A pooling engine (vLLM's --runner pooling): /v1/chat/completions and /v1/completions
    # answer 404 as vLLM's do, and the gateway probes it with an embedding instead.
    embedding_only: bool = False
    tokenize: bool = False  # serve vLLM's POST /tokenize (chat messages in, a count out)
    embedding_dims: int = 8  # the length of the vectors POST /v1/embeddings answers
    # Every answer's pieces instead of the default words (e.g. a JSON call, as a grammar-
    # bound llama.cpp writes it), and the finish_reason of its streams.
    script: list[str] | None = None
    finish_reason: str = "stop"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._chat)
        app.router.add_post("/tokenize", self._tokenize)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server  # noqa: SLF001 - the port chosen by the OS
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def served(self, request_id: str) -> list[Recorded]:
        """Requests the gateway sent for ``request_id`` (engines get it as a UUID)."""
        wanted = engine_request_id(request_id)
        return [r for r in self.requests if r.request_id == wanted]

    def by_request_id(self, request_id: str) -> Recorded:
        return self.served(request_id)[0]

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": self.model, "object": "model"}]}
        )

    async def _health(self, _request: web.Request) -> web.Response:
        if self.health_status is None:
            raise web.HTTPNotFound()
        return web.Response(status=self.health_status)

    async def _metrics(self, _request: web.Request) -> web.Response:
        self.scrapes += 1
        if self.metrics_text is None:
            raise web.HTTPNotFound()
        return web.Response(text=self.metrics_text, content_type="text/plain")

    async def _tokenize(self, request: web.Request) -> web.Response:
        if not self.tokenize:
            raise web.HTTPNotFound()
        payload = await request.json()
        count = usage_of(payload, [])["prompt_tokens"]
        if "messages" not in payload and isinstance(payload.get("prompt"), str):
            count = len(payload["prompt"].split())  # a text: one token per word
        return web.json_response({"count": count, "tokens": list(range(count))})

    async def _embeddings(self, request: web.Request) -> web.Response:
        payload = await request.json()
        if request.headers.get(PROBE_HEADER):
            return self._embedding_probe(payload)
        record = Recorded(request.headers.get("X-Request-ID"), request.path, payload,
                          time.time(), headers=dict(request.headers))  # fmt: skip
        self.requests.append(record)
        value = payload.get("input")
        inputs = value if isinstance(value, list) and not isinstance(value[0], int) else [value]
        text = " ".join(item for item in inputs if isinstance(item, str))
        opts = {**directives({"prompt": text}), **self.forced}
        if "status" in opts:
            failure = {"error": {"message": f"fake failure {opts['status']}", "type": "fake"}}
            return web.json_response(failure, status=int(opts["status"]))
        await asyncio.sleep(float(opts.get("delay", 0)))
        dims = int(payload.get("dimensions") or self.embedding_dims)
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_of(item, dims)}
            for i, item in enumerate(inputs[1:] if "wrong_count" in opts else inputs)
        ]
        body: dict[str, Any] = {"object": "list", "data": data, "model": self.model}
        if "no_usage" not in opts:
            tokens = sum(len(i) if isinstance(i, list) else len(i.split()) for i in inputs)
            body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        record.finished = time.time()
        return web.json_response(body)

    def _embedding_probe(self, payload: dict[str, Any]) -> web.Response:
        """The gateway's probe of an embedding-only engine: counted in ``probes`` (not in
        ``requests``), failing while ``forced`` has a status."""
        self.probes += 1
        if "status" in self.forced:
            return web.json_response({"error": {"message": "fake"}}, status=500)
        vector = embedding_of(payload["input"], self.embedding_dims)
        data = [{"object": "embedding", "index": 0, "embedding": vector}]
        return web.json_response({"object": "list", "data": data, "model": self.model})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        if self.embedding_only:
            raise web.HTTPNotFound()
        payload = await request.json()
        if request.headers.get(PROBE_HEADER):
            # The gateway's 1-token health probe: counted apart, so tests that look at the
            # requests they sent never see it.
            self.probes += 1
            if "status" in self.forced:
                return web.json_response({"error": {"message": "fake"}}, status=500)
            return web.json_response(completion(self.model, ["Hi"], payload, {}))
        record = Recorded(
            request.headers.get("X-Request-ID"),
            request.path,
            payload,
            time.time(),
            headers=dict(request.headers),
        )
        self.requests.append(record)
        opts = {**directives(payload), **self.forced}
        if "reset" in opts:
            assert request.transport is not None
            request.transport.abort()  # the engine "dies" before answering
            return web.Response()
        if "status" in opts:
            status = int(opts["status"])
            message = LEAKY_MESSAGE if "leak" in opts else f"fake failure {status}"
            body = {"error": {"message": message, "type": "server_error"}}
            return web.json_response(body, status=status)
        await asyncio.sleep(float(opts.get("first_token_delay", 0)))
        words = list(self.script) if self.script is not None else answer_words(payload, opts)
        if not payload.get("stream"):
            record.finished = time.time()
            return web.json_response(completion(self.model, words, payload, opts))
        return await self._stream(request, record, words, payload, opts)

    async def _stream(
        self,
        request: web.Request,
        record: Recorded,
        words: list[str],
        payload: dict[str, Any],
        opts: dict[str, str],
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        delay = float(opts.get("delay", 0))
        crash_after = int(opts["crash_after"]) if "crash_after" in opts else None
        try:
            await response.prepare(request)
            if "role_first" in opts:
                await response.write(sse(chunk(self.model, {"role": "assistant", "content": ""})))
            if "tool_call" in opts:
                words = []  # the answer is the call
                for delta in tool_call_deltas(opts["tool_call"]):
                    await response.write(sse(chunk(self.model, delta)))
            for index, word in enumerate(words):
                if crash_after is not None and index == crash_after:
                    assert request.transport is not None
                    request.transport.abort()  # the engine "dies" mid-stream
                    return response
                for copy in range(copies(payload)):
                    await response.write(sse(chunk(self.model, {"content": word}, index=copy)))
                record.chunks_sent += 1
                if delay:
                    await asyncio.sleep(delay)
            if "no_finish" not in opts:
                finish = "tool_calls" if "tool_call" in opts else self.finish_reason
                for copy in range(copies(payload)):
                    await response.write(sse(chunk(self.model, {}, finish, index=copy)))
            options = payload.get("stream_options") or {}
            if options.get("include_usage") and "no_usage" not in opts:
                for usage in usage_reports(payload, words, opts):
                    chunk_ = {**chunk(self.model, {}), "choices": [], "usage": usage}
                    await response.write(sse(chunk_))
            await response.write(b"data: [DONE]\n\n")
            record.finished = time.time()
        except ConnectionResetError:
            record.aborted_at = time.time()  # the gateway closed the connection
        except asyncio.CancelledError:
            record.aborted_at = time.time()
            raise
        return response


def directives(payload: dict[str, Any]) -> dict[str, str]:
    messages = payload.get("messages") or [{"content": payload.get("prompt", "")}]
    text = str(messages[-1].get("content") or "")
    found: dict[str, str] = {}
    for group in _DIRECTIVE.findall(text):
        for item in group.split():
            key, _, value = item.partition("=")
            found[key] = value or "1"
    return found


def answer_words(payload: dict[str, Any], opts: dict[str, str]) -> list[str]:
    if "echo" in opts:
        return [json.dumps(payload, sort_keys=True)]
    count = int(opts.get("chunks", len(DEFAULT_WORDS)))
    return [
        DEFAULT_WORDS[i % len(DEFAULT_WORDS)] if i < len(DEFAULT_WORDS) else f" w{i}"
        for i in range(count)
    ]


def tool_call_deltas(name: str) -> list[dict[str, Any]]:
    """A call of ``name`` as engines stream it: id and name first, the arguments after."""
    start = {"index": 0, "id": "call_fake1", "type": "function",
             "function": {"name": name, "arguments": '{"city": '}}  # fmt: skip
    rest = {"index": 0, "function": {"arguments": '"Paris"}'}}
    return [{"tool_calls": [start]}, {"tool_calls": [rest]}]


def chunk(
    model: str, delta: dict[str, Any], finish: str | None = None, index: int = 0
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }


def copies(payload: dict[str, Any]) -> int:
    """OpenAI's ``n``: every answer is the same words, streamed as choices 0..n-1."""
    n = payload.get("n")
    return n if isinstance(n, int) and n > 1 else 1


def usage_reports(
    payload: dict[str, Any], words: list[str], opts: dict[str, str]
) -> list[dict[str, int]]:
    """The usage chunks' contents: one for all answers (as vLLM sends), or with
    ``[[usage_per_answer]]`` one per answer, each with the whole prompt (as llama-server
    sends for ``n`` > 1)."""
    n = copies(payload)
    if "usage_per_answer" in opts:
        return [usage_of(payload, words)] * n
    usage = usage_of(payload, words * n)
    return [usage]


def usage_of(payload: dict[str, Any], words: list[str]) -> dict[str, int]:
    prompt = sum(len(str(m.get("content", "")).split()) for m in payload.get("messages", []))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": len(words),
        "total_tokens": prompt + len(words),
    }


def completion(
    model: str, words: list[str], payload: dict[str, Any], opts: dict[str, str]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(words)},
                "finish_reason": "stop",
            }
        ],
    }
    if "no_usage" not in opts:
        body["usage"] = usage_of(payload, words)
    return body


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def embedding_of(item: str | list[int], dims: int) -> list[float]:
    """A unit vector derived from the input: equal inputs, equal vectors."""
    digest = hashlib.sha256(json.dumps(item).encode()).digest()
    raw = [digest[i % len(digest)] / 255 - 0.5 + i / 1000 for i in range(dims)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]

"""OpenTelemetry: a server span per request, an engine client span in the same trace, and
the trace handed to the engine in ``traceparent``; exported over OTLP/HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from chatgate.db import migrate
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import start_gateway


@pytest_asyncio.fixture
async def collector() -> AsyncIterator[tuple[str, list[Span]]]:
    spans: list[Span] = []

    async def receive(request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                spans.extend(scope.spans)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", receive)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]  # noqa: SLF001
    yield f"http://127.0.0.1:{port}", spans
    await runner.cleanup()


async def test_request_and_engine_spans_share_a_trace(
    collector: tuple[str, list[Span]], tmp_path: Path, upstream: FakeUpstream
) -> None:
    endpoint, spans = collector
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(tmp_path, url, upstream, otlp_endpoint=endpoint)
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with start_gateway(settings, upstream) as gateway:
        account = await gateway.account()
        async with gateway.client() as client:
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
                headers={
                    **account.key_headers,
                    "X-Request-ID": "traced-1",
                    "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01",
                },
            )
        assert response.status_code == 200
    # leaving the gateway shut the tracer provider down, which flushed the spans
    engine_call = upstream.by_request_id("traced-1")
    server = next(s for s in spans if s.name == "POST /v1/chat/completions")
    client_span = next(s for s in spans if s.name == "POST /chat/completions")
    assert server.trace_id.hex() == caller_trace, "the caller's trace is continued"
    assert client_span.trace_id == server.trace_id
    assert client_span.parent_span_id == server.span_id
    assert client_span.kind == Span.SPAN_KIND_CLIENT and server.kind == Span.SPAN_KIND_SERVER
    traceparent = engine_call.headers["traceparent"]
    assert traceparent.split("-")[1] == caller_trace
    assert traceparent.split("-")[2] == client_span.span_id.hex()
    attributes = {a.key: a.value.string_value for a in client_span.attributes}
    assert attributes["chatgate.request_id"] == "traced-1"


async def test_tracing_is_off_without_an_endpoint(tmp_path: Path, upstream: FakeUpstream) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await migrate.upgrade_async(url)
    async with start_gateway(gateway_settings(tmp_path, url, upstream), upstream) as gateway:
        assert gateway.app.state.tracer is None
        account = await gateway.account()
        async with gateway.client() as client:
            await client.post(
                "/v1/chat/completions",
                json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
                headers={**account.key_headers, "X-Request-ID": "untraced-1"},
            )
    assert "traceparent" not in upstream.by_request_id("untraced-1").headers

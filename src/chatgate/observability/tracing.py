"""Optional OpenTelemetry tracing (OTLP over HTTP) of the request → engine path.

Off unless ``CHATGATE_OTLP_ENDPOINT`` is set. A server span covers each HTTP request
(continuing a caller's ``traceparent``); engine calls get client spans and pass the
trace on to the engine in ``traceparent``, so vLLM's own spans join the same trace.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatgate import __version__


def make_provider(endpoint: str, service_name: str) -> TracerProvider:
    """A provider of our own (not the global one), exporting in batches to ``endpoint``."""
    resource = Resource.create({"service.name": service_name, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class TracingMiddleware:
    def __init__(self, app: ASGIApp, tracer: Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = extract(carrier)
        name = f"{scope['method']} {scope['path']}"
        with self.tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
        ) as span:
            state = scope.setdefault("state", {})

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                    if state.get("request_id"):
                        span.set_attribute("chatgate.request_id", state["request_id"])
                await send(message)

            await self.app(scope, receive, send_wrapper)


def engine_span(tracer: Tracer | None, name: str, attributes: dict[str, Any]) -> Any:
    """A client span for an engine call (a no-op context when tracing is off)."""
    if tracer is None:
        return trace.use_span(trace.INVALID_SPAN, end_on_exit=False)
    return tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes)

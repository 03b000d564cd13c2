"""Opening an engine request with failover: retry on another replica only while nothing
has reached the client.

A stream is read up to its first content chunk before it is handed over (vLLM and
llama.cpp first send an empty role chunk): if the engine dies before that, the client
never sees it and another replica answers instead. After that, a failure is the
caller's to report (error event, partial answer); it is never retried, so no text is
duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from chatgate.engines.client import DONE_LINE, EngineClient, EngineError, parse_data_line
from chatgate.engines.endpoint import Endpoint
from chatgate.engines.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.observability.metrics import Metrics

log = logging.getLogger("chatgate.engines")

MAX_ATTEMPTS = 3
# Lines buffered while waiting for the first content (role chunks, keep-alive comments);
# past this the stream is handed over as it is.
HEAD_MAX_LINES = 32
# The engine's fault, so another replica may do better. Not: engine_rejected (the
# request itself is bad: 4xx) or engine_misconfigured (the gateway's configuration).
ENGINE_FAULTS = frozenset(
    {"engine_unavailable", "engine_timeout", "engine_error", "engine_disconnected",
     "engine_bad_response"}
)  # fmt: skip

T = TypeVar("T")


def is_engine_fault(exc: EngineError) -> bool:
    return exc.code in ENGINE_FAULTS


@dataclass
class Upstream:
    """An open engine stream that has produced its first content (or ended)."""

    endpoint: Endpoint
    response: aiohttp.ClientResponse
    head: list[bytes]  # lines already read: relayed before the rest
    rest: AsyncGenerator[list[bytes], None]

    async def batches(self) -> AsyncGenerator[list[bytes], None]:
        """The lines in the batches they arrived in (the head first, as one)."""
        try:
            if self.head:
                yield self.head
            async for batch in self.rest:
                yield batch
        finally:
            await self.rest.aclose()

    async def lines(self) -> AsyncGenerator[bytes, None]:
        batches = self.batches()
        try:
            async for batch in batches:
                for line in batch:
                    yield line
        finally:
            await batches.aclose()


@dataclass(frozen=True)
class Upstreams:
    """Routing + the engine client + accounting of engine failures, for one request."""

    registry: ModelRegistry
    client: EngineClient
    metrics: Metrics | None = None
    on_attempt: Callable[[Endpoint], None] | None = None  # e.g. to name the usage row's engine

    async def stream(
        self,
        entry: ModelEntry,
        path: str,
        payload: dict[str, Any],
        request_id: str,
        affinity_key: str | None = None,
    ) -> Upstream:
        """A primed stream; the endpoint's ``outstanding`` stays counted until the caller
        finishes with it."""

        async def attempt(endpoint: Endpoint) -> Upstream:
            body = {**payload, "model": endpoint.upstream_model}
            return await _open_primed(self.client, endpoint, path, body, request_id)

        upstream = await self._with_failover(entry, affinity_key, attempt)
        self.registry.record_success(upstream.endpoint)
        return upstream

    async def fetch(
        self,
        entry: ModelEntry,
        path: str,
        payload: dict[str, Any],
        request_id: str,
        affinity_key: str | None = None,
    ) -> tuple[Endpoint, dict[str, Any]]:
        """A non-streamed answer: nothing reaches the client before it is complete, so
        every engine fault may be retried elsewhere."""

        async def attempt(endpoint: Endpoint) -> tuple[Endpoint, dict[str, Any]]:
            body = {**payload, "model": endpoint.upstream_model}
            return endpoint, await _fetch_once(self.client, endpoint, path, body, request_id)

        endpoint, data = await self._with_failover(entry, affinity_key, attempt)
        self.registry.record_success(endpoint)
        return endpoint, data

    def failed(self, endpoint: Endpoint, exc: EngineError) -> None:
        """An engine-side failure (also mid-stream) counts against the replica."""
        if not is_engine_fault(exc):
            return
        self.registry.record_failure(endpoint, exc.message)
        if self.metrics is not None:
            self.metrics.engine_failures.labels(endpoint.name, exc.code).inc()

    async def _with_failover(
        self,
        entry: ModelEntry,
        affinity_key: str | None,
        attempt: Callable[[Endpoint], Awaitable[T]],
    ) -> T:
        tried: list[str] = []
        last: EngineError | None = None
        for _ in range(max(1, min(len(entry.endpoints), MAX_ATTEMPTS))):
            try:
                endpoint = self.registry.pick(entry, affinity_key, exclude=tried)
            except APIError:
                if last is None:
                    raise
                break  # nothing left to try: the last engine error says most
            if last is not None:
                log.warning("retrying on %s: %s (%s)", endpoint.name, last.message, last.engine)
                if self.metrics is not None:
                    self.metrics.engine_failovers.labels(entry.id).inc()
            tried.append(endpoint.name)
            if self.on_attempt is not None:
                self.on_attempt(endpoint)
            try:
                return await attempt(endpoint)
            except EngineError as exc:
                exc.engine = endpoint.name
                self.failed(endpoint, exc)
                if not is_engine_fault(exc):
                    raise
                last = exc
        assert last is not None
        raise last


async def _open_primed(
    client: EngineClient,
    endpoint: Endpoint,
    path: str,
    payload: dict[str, Any],
    request_id: str,
) -> Upstream:
    endpoint.outstanding += 1
    response: aiohttp.ClientResponse | None = None
    rest: AsyncGenerator[list[bytes], None] | None = None
    try:
        response = await client.open(endpoint, path, payload, request_id)
        rest = client.line_batches(response, endpoint)
        head: list[bytes] = []
        while len(head) < HEAD_MAX_LINES:
            try:
                batch = await anext(rest)
            except StopAsyncIteration:
                raise EngineError(
                    "The engine ended the stream before answering", "engine_disconnected"
                ) from None
            head.extend(batch)
            if any(starts_answer(line) for line in batch):
                break
        return Upstream(endpoint, response, head, rest)
    except BaseException:
        # Failed or cancelled before the hand-over: closing aborts the engine's work.
        if rest is not None:
            await rest.aclose()
        if response is not None:
            response.close()
        endpoint.outstanding -= 1
        raise


async def _fetch_once(
    client: EngineClient,
    endpoint: Endpoint,
    path: str,
    payload: dict[str, Any],
    request_id: str,
) -> dict[str, Any]:
    endpoint.outstanding += 1
    try:
        response = await client.open(endpoint, path, payload, request_id)
        try:
            data = await client.read_json(response, endpoint)
        except BaseException:
            response.close()  # closing the connection aborts the engine's generation
            raise
        response.release()
        return data
    finally:
        endpoint.outstanding -= 1


def starts_answer(line: bytes) -> bool:
    """Whether relaying this line commits the request to its replica: content, a finish,
    usage, an error object or the end marker. Role-only chunks and comments do not."""
    if line == DONE_LINE:
        return True
    chunk = parse_data_line(line)
    if chunk is None:
        return False
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices:
        return True
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if choice.get("finish_reason") or choice.get("text"):
            return True
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(v for k, v in delta.items() if k != "role"):
            return True
    return False

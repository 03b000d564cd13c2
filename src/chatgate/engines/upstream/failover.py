"""The one owner of an engine request (``Upstreams.stream``): it waits for a fair slot,
routes with failover, counts the replica's requests and releases them at the end.

Failover retries on another replica only while nothing has reached the client.

A stream is read up to its first content chunk before it is handed over (vLLM and
llama.cpp first send an empty role chunk): if the engine dies before that, the client
never sees it and another replica answers instead. After that, a failure is the
caller's to report (error event, partial answer); it is never retried, so no text is
duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import aiohttp

from chatgate.engines.admission.pool import EnginePools, Ticket
from chatgate.engines.admission.queue import Grant
from chatgate.engines.upstream.client import DONE_LINE, EngineClient, EngineError, parse_data_line
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.observability.metrics import Metrics
from chatgate.shutdown import Drain, Flight, ServerShuttingDown

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


class ChunkAdapter(Protocol):
    """Rewrites a request's engine stream before anyone reads it, the one place every
    dialect's stream passes (e.g. a forced tool call on llama.cpp: ``forced_tools``)."""

    def adapt(self, batch: list[bytes]) -> list[bytes]:
        """The lines to relay for these engine lines (as many, fewer or more)."""
        ...

    def end(self) -> list[bytes]:
        """What is still held back when the stream ends."""
        ...


@dataclass
class EngineCall:
    """One request to a model's engines, as every route (web chat, /v1, titles) describes
    it; the owner fills in which replica served it and how long it queued."""

    model: ModelEntry
    path: str  # "/chat/completions" | "/completions" | "/embeddings" (fetch only)
    payload: dict[str, Any]  # without "model": each replica gets its own engine name
    request_id: str
    ticket: Ticket
    affinity_key: str | None = None
    tried: list[str] = field(default_factory=list)  # every replica tried, in order
    queue_ms: float | None = None  # time waiting for a slot in the gateway's queue
    adapter: ChunkAdapter | None = None  # rewrites the engine's lines for every reader

    @property
    def engine(self) -> str | None:
        """The replica tried last: the one that served, in the end."""
        return self.tried[-1] if self.tried else None


@dataclass
class Upstream:
    """An open engine stream that has produced its first content (or ended). Read it
    with ``batches``/``lines``; its owner (``Upstreams.stream``) releases it."""

    endpoint: Endpoint
    response: aiohttp.ClientResponse
    head: list[bytes]  # lines already read: relayed before the rest
    rest: AsyncGenerator[list[bytes], None]
    completed: bool = False  # read to its end: the connection can be reused
    error: EngineError | None = None  # how it broke mid-stream (reported by the owner)
    flight: Flight | None = None  # the drain closes the response at its deadline
    adapter: ChunkAdapter | None = None  # the call's, applied to every batch

    async def batches(self) -> AsyncGenerator[list[bytes], None]:
        """The lines in the batches they arrived in (the head first, as one), as the
        call's adapter rewrites them (a batch it empties is not yielded)."""
        try:
            if self.head and (head := self._adapted(self.head)):
                yield head
            async for batch in self.rest:
                if adapted := self._adapted(batch):
                    yield adapted
            self.completed = True
            if self.adapter is not None and (tail := self.adapter.end()):
                yield tail
        except EngineError as exc:
            if self.flight is not None and self.flight.interrupted:
                # The read failed because the drain closed the response, not the engine.
                self.error = ServerShuttingDown()
                raise self.error from exc
            self.error = exc
            raise
        finally:
            await self.rest.aclose()

    def _adapted(self, batch: list[bytes]) -> list[bytes]:
        return batch if self.adapter is None else self.adapter.adapt(batch)

    async def lines(self) -> AsyncGenerator[bytes, None]:
        batches = self.batches()
        try:
            async for batch in batches:
                for line in batch:
                    yield line
        finally:
            await batches.aclose()

    async def close(self) -> None:
        """Give the connection back (read to its end) or close it, which aborts the
        engine's generation; the replica has one request less in flight."""
        if self.completed:
            self.response.release()
        else:
            self.response.close()
        self.endpoint.outstanding -= 1
        await self.rest.aclose()


@dataclass(frozen=True)
class Upstreams:
    """The one owner of engine requests: admission (a fair slot in the model's pool),
    routing with failover, the replicas' accounting, and the release at the end."""

    registry: ModelRegistry
    client: EngineClient
    metrics: Metrics | None = None
    pools: EnginePools | None = None  # None: no admission queue (tools, tests)
    drain: Drain | None = None  # None: nothing cuts requests short (tools, tests)

    @asynccontextmanager
    async def stream(self, call: EngineCall) -> AsyncIterator[Upstream]:
        """``async with upstreams.stream(call) as upstream:`` waits for a slot, opens a
        primed stream (failing over while nothing reached the client), and on exit
        releases or aborts it, reports a mid-stream failure and frees the slot. At the
        drain deadline the wait, the opening or the stream ends in ServerShuttingDown."""
        with self._track() as flight:
            grant: Grant | None = None
            upstream: Upstream | None = None
            try:
                async with flight.interruptible():
                    grant = await self._admit(call)
                    upstream = await self._with_failover(call, self._opener(call))
                upstream.flight = flight
                upstream.adapter = call.adapter
                flight.hold(upstream.response)
                self.registry.record_success(upstream.endpoint)
                if self.metrics is not None:
                    self.metrics.active_streams.inc()
                yield upstream
            finally:
                if upstream is not None:
                    if self.metrics is not None:
                        self.metrics.active_streams.dec()
                    if upstream.error is not None:
                        self.failed(upstream.endpoint, upstream.error)  # never retried
                    await upstream.close()
                self._release(call, grant)

    async def fetch(self, call: EngineCall) -> dict[str, Any]:
        """A non-streamed answer: nothing reaches the client before it is complete, so
        every engine fault may be retried elsewhere (until the drain deadline)."""

        async def attempt(endpoint: Endpoint) -> tuple[Endpoint, dict[str, Any]]:
            body = call.model.engine_body({**call.payload, "model": endpoint.upstream_model})
            data = await _fetch_once(self.client, endpoint, call.path, body, call.request_id)
            return endpoint, data

        with self._track() as flight:
            grant: Grant | None = None
            try:
                async with flight.interruptible():
                    grant = await self._admit(call)
                    endpoint, data = await self._with_failover(call, attempt)
                self.registry.record_success(endpoint)
                return data
            finally:
                self._release(call, grant)

    def failed(self, endpoint: Endpoint, exc: EngineError) -> None:
        """An engine-side failure (also mid-stream) counts against the replica."""
        if not is_engine_fault(exc):
            return
        self.registry.record_failure(endpoint, exc.message)
        if self.metrics is not None:
            self.metrics.engine_failures.labels(endpoint.name, exc.code).inc()

    def _track(self) -> AbstractContextManager[Flight]:
        """The request's registration with the drain (a flight nothing cuts short
        without one)."""
        return self.drain.track() if self.drain is not None else nullcontext(Flight())

    def _opener(self, call: EngineCall) -> Callable[[Endpoint], Awaitable[Upstream]]:
        async def attempt(endpoint: Endpoint) -> Upstream:
            body = call.model.engine_body({**call.payload, "model": endpoint.upstream_model})
            return await _open_primed(self.client, endpoint, call.path, body, call.request_id)

        return attempt

    async def _admit(self, call: EngineCall) -> Grant | None:
        if self.pools is None:
            return None
        grant = await self.pools.acquire(call.model, call.ticket)
        call.queue_ms = round(grant.waited * 1000, 1)
        return grant

    def _release(self, call: EngineCall, grant: Grant | None) -> None:
        if grant is not None and self.pools is not None:
            self.pools.release(call.model.pool_id, grant)

    async def _with_failover(
        self, call: EngineCall, attempt: Callable[[Endpoint], Awaitable[T]]
    ) -> T:
        entry, tried = call.model, call.tried
        last: EngineError | None = None
        for _ in range(max(1, min(len(entry.endpoints), MAX_ATTEMPTS))):
            try:
                endpoint = self.registry.pick(entry, call.affinity_key, exclude=tried)
            except APIError:
                if last is None:
                    raise
                break  # nothing left to try: the last engine error says most
            if last is not None:
                log.warning("retrying on %s: %s (%s)", endpoint.name, last.message, last.engine)
                if self.metrics is not None:
                    self.metrics.engine_failovers.labels(entry.id).inc()
            tried.append(endpoint.name)
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

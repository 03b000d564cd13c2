"""Background checks of every engine endpoint: health (readmitting replicas whose
circuit opened), the engines' own load from their ``/metrics``, and the gateway gauges
that follow both."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from chatgate.engines.client import EngineClient
from chatgate.engines.endpoint import Endpoint
from chatgate.engines.health import check_endpoint
from chatgate.engines.registry import ModelRegistry
from chatgate.engines.scrape import scrape_metrics
from chatgate.observability.metrics import Metrics

log = logging.getLogger("chatgate.engines")

CHECK_INTERVAL = 10.0
_CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class EngineMonitor:
    def __init__(
        self,
        client: EngineClient,
        registry: ModelRegistry,
        metrics: Metrics,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self._client = client
        self._registry = registry
        self._metrics = metrics
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    async def check_all(self) -> None:
        endpoints = list(self._registry.endpoints())
        await asyncio.gather(*(self._check(ep) for ep in endpoints))
        for endpoint in endpoints:
            self._export(endpoint)

    async def _check(self, endpoint: Endpoint) -> None:
        healthy = await check_endpoint(self._client, endpoint)
        if not healthy:
            endpoint.metrics = None  # a dead engine's last numbers would mislead routing
            return
        now = self._registry.clock()
        if not endpoint.scrape.due(now):
            return
        endpoint.metrics = await scrape_metrics(
            self._client.session, endpoint.root_url, endpoint.name
        )
        if endpoint.metrics is None:
            if endpoint.scrape.misses == 0:
                log.info("engine %s has no usable /metrics: load from the gateway only",
                         endpoint.name)  # fmt: skip
            endpoint.scrape.miss(now)
        else:
            endpoint.scrape.hit()

    def _export(self, endpoint: Endpoint) -> None:
        name = endpoint.name
        m = self._metrics
        m.engine_up.labels(name).set(1 if endpoint.healthy else 0)
        state = endpoint.breaker.state(self._registry.clock())
        m.engine_circuit_state.labels(name).set(_CIRCUIT_VALUES[state])
        m.engine_outstanding.labels(name).set(endpoint.outstanding)
        scraped = endpoint.metrics
        if scraped is None:
            # Absent, not zero: "unknown" must not read as an idle engine on dashboards.
            for gauge in (m.engine_requests_running, m.engine_requests_waiting,
                          m.engine_kv_cache_usage):  # fmt: skip
                with contextlib.suppress(KeyError):
                    gauge.remove(name)
            return
        m.engine_requests_running.labels(name).set(scraped.requests_running)
        m.engine_requests_waiting.labels(name).set(scraped.requests_waiting)
        if scraped.kv_cache_usage is not None:
            m.engine_kv_cache_usage.labels(name).set(scraped.kv_cache_usage)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="engine-monitor")

    async def _run(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception:  # one bad cycle must not end health checking for good
                log.exception("engine health check failed")
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

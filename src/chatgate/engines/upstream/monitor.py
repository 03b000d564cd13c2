"""Background checks of every engine endpoint: health (readmitting replicas whose
circuit opened), a 1-token generation when an engine has answered nothing for a while
(an engine may answer ``/health`` and still be unable to generate), the diagnosis of
engines a supervisor gave up on, the engines' own load from their ``/metrics``, and the
gateway gauges that follow them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from chatgate.engines.runtime.process import state_file_for
from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.health import check_endpoint, learn_capacity, probe_generation
from chatgate.engines.upstream.registry import ModelRegistry
from chatgate.engines.upstream.scrape import scrape_metrics
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
        *,
        probe_interval: float = 60.0,
        run_dir: Path | None = None,
    ) -> None:
        self._client = client
        self._registry = registry
        self._metrics = metrics
        self._interval = interval
        self._probe_interval = probe_interval
        self._run_dir = run_dir  # supervisors' state files (other processes' engines)
        self._task: asyncio.Task[None] | None = None

    async def check_all(self) -> None:
        endpoints = list(self._registry.endpoints())
        await asyncio.gather(*(self._check(ep) for ep in endpoints))
        for endpoint in endpoints:
            self._export(endpoint)

    async def _check(self, endpoint: Endpoint) -> None:
        self._read_supervisor_state(endpoint)
        reachable = await check_endpoint(self._client, endpoint)
        if reachable and endpoint.kind != "managed":  # managed: its supervisor probes it
            await self._maybe_generate(endpoint)
            if endpoint.capacity is None and not endpoint.scrape.props_tried:
                endpoint.scrape.props_tried = True  # asked once: engines rarely change it
                endpoint.capacity = await learn_capacity(self._client, endpoint)
        if not endpoint.healthy:
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

    async def _maybe_generate(self, endpoint: Endpoint) -> bool:
        """One token, when nothing proved the engine can generate within the interval."""
        now = self._registry.clock()
        last = max(endpoint.last_success or -1e18, endpoint.last_probe or -1e18)
        if now - last < self._probe_interval and endpoint.probe_error is None:
            return True
        endpoint.last_probe = now
        endpoint.probe_error = await probe_generation(self._client, endpoint)
        if endpoint.probe_error is not None:
            log.warning("engine %s cannot generate: %s", endpoint.name, endpoint.probe_error)
        endpoint.healthy = endpoint.probe_error is None
        endpoint.last_error = endpoint.probe_error
        return endpoint.healthy

    def _read_supervisor_state(self, endpoint: Endpoint) -> None:
        """A supervisor in another process (a multi-worker ``serve``) that gave up on this
        engine says why in its state file."""
        if self._run_dir is None or endpoint.kind == "managed":
            return
        try:
            data = json.loads(state_file_for(self._run_dir, endpoint.upstream_model).read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("base_url") == endpoint.base_url:
            failed = data.get("state") == "failed"
            endpoint.failure = str(data.get("last_error") or "failed") if failed else None

    def _export(self, endpoint: Endpoint) -> None:
        name = endpoint.name
        m = self._metrics
        m.engine_up.labels(name).set(1 if endpoint.healthy else 0)
        state = endpoint.breaker.state(self._registry.clock())
        m.engine_circuit_state.labels(name).set(_CIRCUIT_VALUES[state])
        m.engine_outstanding.labels(name).set(endpoint.outstanding)
        m.engine_failed.labels(name).set(1 if endpoint.failure else 0)
        if endpoint.kind == "managed":
            wedged = endpoint.wedged_restarts
            m.engine_supervisor_restarts.labels(name, "wedged").set(wedged)
            m.engine_supervisor_restarts.labels(name, "crash").set(endpoint.restarts - wedged)
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

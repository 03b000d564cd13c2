"""Background health checks of every engine endpoint: routing prefers healthy ones and
``chatgate_engine_up`` follows them."""

from __future__ import annotations

import asyncio
import contextlib

from chatgate.engines.client import EngineClient
from chatgate.engines.health import check_endpoint
from chatgate.engines.registry import ModelRegistry
from chatgate.observability.metrics import Metrics

CHECK_INTERVAL = 10.0


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
        await asyncio.gather(*(check_endpoint(self._client, ep) for ep in endpoints))
        for endpoint in endpoints:
            self._metrics.engine_up.labels(endpoint.name).set(1 if endpoint.healthy else 0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="engine-monitor")

    async def _run(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

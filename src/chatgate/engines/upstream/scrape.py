"""Engine load from the engine's own Prometheus ``/metrics``: queue depth and KV cache.

vLLM exports ``vllm:num_requests_running``/``waiting`` and the KV cache use (V1:
``vllm:kv_cache_usage_perc``, V0: ``vllm:gpu_cache_usage_perc``); llama.cpp's
``llama-server --metrics`` has equivalents. Engines without metrics (llama-cpp-python)
answer 404: then the scrape backs off instead of asking every cycle.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger("chatgate.engines")

SCRAPE_TIMEOUT = 3.0
MAX_METRICS_BYTES = 8 * 1024 * 1024
# After a miss, wait this long (doubling per miss, capped) before asking again.
BACKOFF_FIRST = 30.0
BACKOFF_MAX = 600.0

RUNNING = ("vllm:num_requests_running", "llamacpp:requests_processing")
WAITING = ("vllm:num_requests_waiting", "llamacpp:requests_deferred")
KV_CACHE = (
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "llamacpp:kv_cache_usage_ratio",
)
_WANTED = frozenset(RUNNING + WAITING + KV_CACHE)


@dataclass(frozen=True)
class EngineMetrics:
    requests_running: float
    requests_waiting: float
    kv_cache_usage: float | None  # 0-1

    def public(self) -> dict[str, float | None]:
        return {
            "requests_running": self.requests_running,
            "requests_waiting": self.requests_waiting,
            "kv_cache_usage": self.kv_cache_usage,
        }


@dataclass
class ScrapeState:
    """Per-endpoint scrape bookkeeping (fixed fields: bounded)."""

    misses: int = 0
    next_at: float = 0.0  # monotonic time of the next attempt
    props_tried: bool = False  # asked llama-server's /props for its slots

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def hit(self) -> None:
        self.misses = 0
        self.next_at = 0.0

    def miss(self, now: float) -> None:
        self.misses += 1
        self.next_at = now + min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (self.misses - 1))


def parse_engine_metrics(text: str) -> EngineMetrics | None:
    """Queue depth and cache use, summed over label sets (data-parallel engines, one
    series per engine core); None when the text has no known engine metric."""
    sums: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for family in text_string_to_metric_families(_relevant_lines(text)):
        for sample in family.samples:
            if sample.name in _WANTED:
                sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
                peaks[sample.name] = max(peaks.get(sample.name, 0.0), sample.value)
    running = _first(sums, RUNNING)
    waiting = _first(sums, WAITING)
    if running is None and waiting is None:
        return None
    # A ratio does not add up across engine cores: the fullest cache is what limits.
    kv_cache = _first(peaks, KV_CACHE)
    return EngineMetrics(running or 0.0, waiting or 0.0, kv_cache)


def _first(values: dict[str, float], names: tuple[str, ...]) -> float | None:
    return next((values[name] for name in names if name in values), None)


def _relevant_lines(text: str) -> str:
    """Only the lines of the wanted series: vLLM's full output is mostly histograms,
    and parsing those every cycle would be wasted work."""
    kept = []
    for line in text.splitlines():
        body = line
        if line.startswith("# "):
            parts = line.split(maxsplit=3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                continue
            body = parts[2]
        # Anything that is not a sample (JSON from a non-Prometheus /metrics) has no name.
        words = body.split("{", 1)[0].split(None, 1)
        name = words[0] if words else ""
        if name in _WANTED:
            kept.append(line)
    return "\n".join(kept) + "\n"


async def scrape_metrics(
    session: aiohttp.ClientSession, root_url: str, engine: str
) -> EngineMetrics | None:
    """GET ``<root>/metrics``; None when it has none (the caller backs off)."""
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT):
            async with session.get(root_url + "/metrics") as response:
                if response.status != 200:
                    return None
                body = await response.content.read(MAX_METRICS_BYTES)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return None  # the health probe reports unreachable engines
    try:
        return parse_engine_metrics(body.decode(errors="replace"))
    except ValueError as exc:
        log.info("engine %s: unreadable /metrics (%s)", engine, exc)
        return None

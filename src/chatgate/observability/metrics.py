"""Prometheus metrics (namespace ``chatgate_``), one registry per app.

Labels stay low-cardinality: routes, model ids, engine names, statuses. Never user ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)

if TYPE_CHECKING:
    from chatgate.usage.record import UsageRecord

# 1.5 s is the seed's TTFT p50 target: a bucket edge there keeps that alert exact.
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1,
    1.5,
    2,
    2.5,
    5,
    10,
    30,
    60,
    120,
)
TOKEN_GAP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


@dataclass(frozen=True, slots=True)
class _UsageChildren:
    """The label children one (route, model, status) updates on every usage row."""

    requests: Any
    duration: Any
    ttft: Any
    input_tokens: Any
    output_tokens: Any


class Metrics:
    def __init__(self) -> None:
        self._usage_children: dict[tuple[str, str, str], _UsageChildren] = {}
        self._gap_observers: dict[str, Callable[[float], None]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, fds
        for collector in (GC_COLLECTOR, PLATFORM_COLLECTOR):
            r.register(collector)
        self.requests = Counter(
            "chatgate_requests_total",
            "Chat and /v1 requests by outcome",
            ["route", "model", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "chatgate_request_duration_seconds",
            "End-to-end request latency",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "chatgate_time_to_first_token_seconds",
            "Time to the first generated token",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "chatgate_inter_token_latency_seconds",
            "Gap between streamed chunks",
            ["model"],
            buckets=TOKEN_GAP_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "chatgate_tokens_total",
            "Tokens by model and direction (input/output)",
            ["model", "direction"],
            registry=r,
        )
        self.active_streams = Gauge(
            "chatgate_active_streams", "Streams being generated right now", registry=r
        )
        self.ratelimit_rejections = Counter(
            "chatgate_ratelimit_rejections_total",
            "Requests refused by a limit or quota",
            ["limit"],
            registry=r,
        )
        self.ratelimit_fallback = Gauge(
            "chatgate_ratelimit_fallback",
            "1 while Redis is unreachable and limits are enforced per process",
            registry=r,
        )
        self.admission_fallback = Gauge(
            "chatgate_admission_fallback",
            "1 while Redis is unreachable and engine slots are admitted per process",
            registry=r,
        )
        self.engine_up = Gauge(
            "chatgate_engine_up",
            "1 if the engine endpoint passed its last health check",
            ["engine"],
            registry=r,
        )
        self.engine_latency = Histogram(
            "chatgate_engine_response_seconds",
            "Time until an engine answered with headers",
            ["engine"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # Routing: passive failures, retries before the first token, circuit state, and the
        # engines' own queue depth (scraped from their /metrics, refreshed by the monitor).
        self.engine_failures = Counter(
            "chatgate_engine_failures_total",
            "Engine-side request failures (connect, 5xx, timeouts, broken streams)",
            ["engine", "reason"],
            registry=r,
        )
        self.engine_failovers = Counter(
            "chatgate_engine_failovers_total",
            "Requests retried on another replica before their first token",
            ["model"],
            registry=r,
        )
        # The gateway's admission queues (one per model's engine pool).
        self.queue_depth = Gauge(
            "chatgate_queue_depth",
            "Requests waiting in the gateway for a slot of the model's engines",
            ["model", "priority"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "chatgate_queue_wait_seconds",
            "Time requests waited in the gateway's queue for an engine slot",
            ["model", "priority"],
            buckets=(0.005, 0.05, 0.25, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.queue_rejections = Counter(
            "chatgate_queue_rejections_total",
            "Requests refused by the admission queue (queue_full, timeout)",
            ["model", "reason"],
            registry=r,
        )
        self.pool_slots = Gauge(
            "chatgate_engine_pool_slots",
            "Slots of a model's engine pool: capacity, and busy (held by requests)",
            ["model", "state"],
            registry=r,
        )
        self.engine_supervisor_restarts = Gauge(
            "chatgate_engine_supervisor_restarts",
            "Restarts of a supervised engine since chatgate started it, by reason"
            " (crash: it exited; wedged: it produced no token for too long)",
            ["engine", "reason"],
            registry=r,
        )
        self.engine_failed = Gauge(
            "chatgate_engine_failed",
            "1 while a supervised engine is failed (a crash loop; not restarted any more)",
            ["engine"],
            registry=r,
        )
        self.engine_circuit_state = Gauge(
            "chatgate_engine_circuit_state",
            "Circuit breaker of an engine endpoint: 0 closed, 1 half-open, 2 open",
            ["engine"],
            registry=r,
        )
        self.engine_outstanding = Gauge(
            "chatgate_engine_outstanding_requests",
            "Requests this gateway has in flight on an engine endpoint",
            ["engine"],
            registry=r,
        )
        self.engine_requests_running = Gauge(
            "chatgate_engine_requests_running",
            "Requests the engine reports as running (all its clients)",
            ["engine"],
            registry=r,
        )
        self.engine_requests_waiting = Gauge(
            "chatgate_engine_requests_waiting",
            "Requests the engine reports as queued (all its clients)",
            ["engine"],
            registry=r,
        )
        self.engine_kv_cache_usage = Gauge(
            "chatgate_engine_kv_cache_usage_ratio",
            "KV cache use the engine reports (0-1)",
            ["engine"],
            registry=r,
        )
        self.db_latency = Histogram(
            "chatgate_db_latency_seconds",
            "Database round trips of the health probe and writes",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.usage_write_failures = Counter(
            "chatgate_usage_write_failures_total", "Usage rows the database refused", registry=r
        )
        self.database_up = Gauge(
            "chatgate_database_up", "1 while the database answers this gateway", registry=r
        )
        self.journal_entries = Gauge(
            "chatgate_journal_entries",
            "Usage rows and answers journaled locally, waiting for the database",
            registry=r,
        )
        self.journal_bytes = Gauge(
            "chatgate_journal_bytes", "Size of the local journal", registry=r
        )
        self.journal_oldest_age = Gauge(
            "chatgate_journal_oldest_age_seconds",
            "Age of the oldest journaled entry not yet in the database",
            registry=r,
        )
        self.journal_written = Counter(
            "chatgate_journal_written_total", "Entries written to the local journal", registry=r
        )
        self.journal_replayed = Counter(
            "chatgate_journal_replayed_total",
            "Journaled entries written to the database on replay",
            registry=r,
        )
        self.gpu_memory_used = Gauge(
            "chatgate_gpu_memory_used_bytes", "GPU memory in use", ["gpu"], registry=r
        )
        self.gpu_memory_total = Gauge(
            "chatgate_gpu_memory_total_bytes", "GPU memory", ["gpu"], registry=r
        )
        self.gpu_utilization = Gauge(
            "chatgate_gpu_utilization_ratio", "GPU utilisation (0-1)", ["gpu"], registry=r
        )
        self.gpu_temperature = Gauge(
            "chatgate_gpu_temperature_celsius", "GPU temperature", ["gpu"], registry=r
        )
        self.gpu_power = Gauge("chatgate_gpu_power_watts", "GPU power draw", ["gpu"], registry=r)
        # Fine-tuning (finetune/): the job this gateway supervises, from its JSON log lines.
        self.training_jobs_running = Gauge(
            "chatgate_training_jobs_running",
            "Fine-tuning jobs this gateway's supervisor runs now (0 or 1)",
            registry=r,
        )
        self.training_jobs = Counter(
            "chatgate_training_jobs_total",
            "Fine-tuning jobs ended, by status (succeeded, failed, cancelled, interrupted)",
            ["status"],
            registry=r,
        )
        self.training_steps = Counter(
            "chatgate_training_steps_total", "Optimizer steps done", ["model"], registry=r
        )
        self.training_step = Gauge(
            "chatgate_training_step", "Current step of the running job", ["model"], registry=r
        )
        self.training_total_steps = Gauge(
            "chatgate_training_total_steps",
            "Steps the running job will take",
            ["model"],
            registry=r,
        )
        self.training_epoch = Gauge(
            "chatgate_training_epoch", "Epoch of the running job", ["model"], registry=r
        )
        self.training_loss = Gauge(
            "chatgate_training_loss", "Training loss of the last step", ["model"], registry=r
        )
        self.training_learning_rate = Gauge(
            "chatgate_training_learning_rate",
            "Learning rate of the last step",
            ["model"],
            registry=r,
        )
        self.training_tokens_per_second = Gauge(
            "chatgate_training_tokens_per_second",
            "Tokens per second of the last step (padding excluded)",
            ["model"],
            registry=r,
        )
        self.training_rss = Gauge(
            "chatgate_training_rss_bytes",
            "Resident memory of the trainer",
            ["model"],
            registry=r,
        )

    def observe_usage(self, row: UsageRecord) -> None:
        """Request metrics from the usage row: one source of truth for both. Label children
        are looked up in a dict of our own: ``labels()`` validates and locks on every call,
        1.2 % of the gateway's CPU at c=32 for five lookups per request (bench/README.md)."""
        model = row.model or "unknown"
        children = self._usage_children.get((row.route, model, row.status))
        if children is None:
            children = self._usage_children[(row.route, model, row.status)] = _UsageChildren(
                requests=self.requests.labels(row.route, model, row.status),
                duration=self.request_duration.labels(row.route, model),
                ttft=self.ttft.labels(model),
                input_tokens=self.tokens.labels(model, "input"),
                output_tokens=self.tokens.labels(model, "output"),
            )
        children.requests.inc()
        children.duration.observe(row.latency_ms / 1000)
        if row.ttft_ms is not None:
            children.ttft.observe(row.ttft_ms / 1000)
        if row.prompt_tokens:
            children.input_tokens.inc(row.prompt_tokens)
        if row.completion_tokens:
            children.output_tokens.inc(row.completion_tokens)

    def token_gap_observer(self, model: str) -> Callable[[float], None]:
        observe = self._gap_observers.get(model)
        if observe is None:
            observe = self._gap_observers[model] = self.itl.labels(model).observe
        return observe

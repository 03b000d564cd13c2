"""The app's lifespan: every resource is registered in one ``AsyncExitStack`` where it is
created, so a start-up that fails half-way closes what already runs (tasks, the engine
client's connections, started engines, leases), and a shutdown closes in the reverse
order of creation. The order is the design:

1. SIGTERM handling off; then what still runs is interrupted and the generations save
   within the drain budget, while everything they need is still up: engines (the
   coordinator stops them only afterwards), usage writer, outbox, database, Redis.
2. The deployment reconciler, then the engine coordinator (engines stop before its
   leader lease is given back), then the fine-tuning supervisor (its job ends as
   interrupted).
3. Fleet events; the admission pools (this gateway's slot leases go back at once), the
   limit store and the engine monitor.
4. The usage writer (flushed: committed, or journaled while the database is away), the
   engine manager (managed engines stop), the engine client, the answer-orphan sweeper,
   the outbox; last Redis, the tracer (spans flushed) and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import urlsplit

from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.auth.cache import IdentityCache
from chatgate.auth.tokens import TokenCodec
from chatgate.chat.answers import OrphanSweeper
from chatgate.chat.generations import GenerationManager
from chatgate.chat.redis_bus import shared_generations
from chatgate.db.health import DatabaseHealth
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.engines.admission.pool import EnginePools
from chatgate.engines.catalog import persist
from chatgate.engines.catalog.profiles import ModelProfile
from chatgate.engines.runtime.coordinator import start_coordinator
from chatgate.engines.runtime.manager import EngineManager
from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint, Timeouts
from chatgate.engines.upstream.failover import Upstreams
from chatgate.engines.upstream.health import discover_upstream_model
from chatgate.engines.upstream.monitor import EngineMonitor
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry, normalise_base_url
from chatgate.errors import APIError
from chatgate.finetune.deployments import Deployer
from chatgate.finetune.desired import DbDesired
from chatgate.finetune.reconcile import EVENT_KIND as DEPLOYMENTS_EVENT
from chatgate.finetune.reconcile import Reconciler
from chatgate.finetune.split import SplitTable
from chatgate.finetune.supervisor import FinetuneSupervisor
from chatgate.fleet import FleetEvents, start_fleet_events
from chatgate.limits.service import LoginPolicy, RateLimiter
from chatgate.limits.store import LimitStore
from chatgate.observability.logging import log_usage
from chatgate.observability.metrics import Metrics
from chatgate.runtime import tune_garbage_collector
from chatgate.settings import Settings
from chatgate.shutdown import Drain, SigtermDrain
from chatgate.state import AppState
from chatgate.usage.journal import Journal
from chatgate.usage.outbox import Outbox
from chatgate.usage.record import UsageRecord
from chatgate.usage.service import UsageWriter


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        app.state.chatgate = await _start(app, stack)
        yield


async def _start(app: FastAPI, stack: AsyncExitStack) -> AppState:
    settings: Settings = app.state.settings
    db = make_engine(settings.resolved_database_url)
    stack.push_async_callback(db.dispose)
    provider = app.state.tracer_provider
    if provider is not None:
        stack.push_async_callback(asyncio.to_thread, provider.shutdown)  # flushes spans
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    if redis is not None:
        stack.push_async_callback(redis.aclose)
    metrics = Metrics()
    sessionmaker = make_sessionmaker(db)
    db_health = DatabaseHealth(on_change=lambda up: metrics.database_up.set(int(up)))
    metrics.database_up.set(1)
    outbox = await _start_outbox(stack, settings, sessionmaker, db_health, metrics)
    orphans = OrphanSweeper(sessionmaker, db_health, settings.answer_lease_seconds)
    orphans.start()
    stack.push_async_callback(orphans.close)
    engines = await _start_engine_client(app, stack, settings, metrics)
    manager, registry = await _start_manager(app, stack, engines, sessionmaker)
    usage = _start_usage(stack, sessionmaker, metrics, outbox, db_health)
    _start_monitor(stack, settings, engines, registry, metrics)
    limiter = _start_limits(stack, settings, sessionmaker, metrics)
    pools = _start_pools(stack, settings, registry, metrics)
    fleet = start_fleet_events(redis, settings.redis_prefix, manager.set_enabled)
    if fleet is not None:
        stack.push_async_callback(fleet.close)
    _start_jobs(app, stack, manager, redis, fleet, sessionmaker, metrics)
    reconciler = await _start_deployments(app, stack, settings, manager, sessionmaker, fleet)
    generations = _start_generations(app, stack, settings, redis, fleet, orphans)
    # Only development mode may run without a configured secret: tokens then die with it.
    secret = (
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else secrets.token_hex(32)
    )
    drain: Drain = app.state.drain
    state = AppState(
        settings=settings,
        db=db,
        sessionmaker=sessionmaker,
        engines=engines,
        registry=registry,
        usage=usage,
        generations=generations,
        tokens=TokenCodec(secret, settings.jwt_issuer, settings.jwt_audience),
        metrics=metrics,
        limits=limiter,
        manager=manager,
        upstreams=Upstreams(registry, engines, metrics, pools, drain),
        db_health=db_health,
        outbox=outbox,
        redis=redis,
        fleet=fleet,
        identity_cache=IdentityCache(settings.identity_cache_seconds),
        splits=reconciler.splits,
    )
    if app.state.tune_gc:
        tune_garbage_collector()
    if app.state.drain_on_sigterm:
        sigterm = SigtermDrain(drain, asyncio.get_running_loop())
        sigterm.install()  # the first SIGTERM drains before uvicorn hears of it
        stack.callback(sigterm.uninstall)
    return state


async def _start_outbox(
    stack: AsyncExitStack,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    db_health: DatabaseHealth,
    metrics: Metrics,
) -> Outbox:
    journal = Journal(settings.journal_dir, settings.journal_max_bytes)
    outbox = Outbox(journal, sessionmaker, db_health, metrics)
    await outbox.replay()  # what a crashed gateway left in the journal, before new rows
    outbox.start()
    stack.push_async_callback(outbox.close)
    return outbox


async def _start_engine_client(
    app: FastAPI, stack: AsyncExitStack, settings: Settings, metrics: Metrics
) -> EngineClient:
    engines = EngineClient(
        Timeouts.from_settings(settings),
        settings.engine_max_connections,
        on_headers=lambda name, seconds: metrics.engine_latency.labels(name).observe(seconds),
        tracer=app.state.tracer,
    )
    await engines.start()
    stack.push_async_callback(engines.close)
    return engines


async def _start_manager(
    app: FastAPI,
    stack: AsyncExitStack,
    engines: EngineClient,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> tuple[EngineManager, ModelRegistry]:
    """The models and their engines: attached ones (their upstream names discovered),
    engines the caller started, the models an admin disabled."""
    settings: Settings = app.state.settings
    profiles: dict[str, ModelProfile] = app.state.profiles
    registry: ModelRegistry = app.state.registry or build_registry(settings, profiles)
    registry.configure_routing(
        settings.engine_circuit_failures,
        settings.engine_circuit_open_seconds,
        settings.engine_affinity_sessions,
    )
    for endpoint in registry.endpoints():
        upstream = await discover_upstream_model(engines, endpoint)
        if upstream:
            endpoint.upstream_model = upstream

    async def remember_active(profile_id: str) -> None:
        async with sessionmaker() as session:
            await persist.save_active(session, profile_id)

    manager = EngineManager(settings, registry, profiles, on_active=remember_active)
    stack.push_async_callback(manager.close)
    for profile_id, supervisor in app.state.managed.items():
        manager.adopt(profile_id, supervisor)
    async with sessionmaker() as session:
        stored = await persist.load(session)
    for model_id in stored.disabled:
        with contextlib.suppress(APIError):  # a model that is gone stays remembered only
            manager.set_enabled(model_id, False)
    return manager, registry


def build_registry(settings: Settings, profiles: dict[str, ModelProfile]) -> ModelRegistry:
    """Attached engines grouped by model; a model named like a profile takes its details."""
    registry = ModelRegistry(settings.default_model)
    grouped: dict[str, list[Endpoint]] = {}
    for name, url in settings.attached_engines():
        parts = urlsplit(url)
        endpoint = Endpoint(
            name=f"{name}@{parts.netloc}", base_url=normalise_base_url(url), upstream_model=name
        )
        grouped.setdefault(name, []).append(endpoint)
    for name, endpoints in grouped.items():
        profile = profiles.get(name)
        entry = ModelEntry(id=name, name=profile.name if profile else name, endpoints=endpoints)
        if profile is not None:
            for endpoint in endpoints:
                endpoint.timeouts = profile.endpoint_timeouts(Timeouts.from_settings(settings))
            entry.aliases = list(profile.aliases)
            entry.default_params = dict(profile.default_params)
            entry.context_length = profile.max_model_len
            entry.profile_id = profile.id
            entry.embeddings = profile.embeddings
            entry.task = profile.task  # "embed": embedding-only (no chat, probed by a vector)
        registry.add(entry)
    return registry


def _start_usage(
    stack: AsyncExitStack,
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    outbox: Outbox,
    db_health: DatabaseHealth,
) -> UsageWriter:
    def on_usage(row: UsageRecord) -> None:
        metrics.observe_usage(row)
        log_usage(row)

    usage = UsageWriter(
        sessionmaker, on_record=on_usage, metrics=metrics, outbox=outbox, health=db_health
    )
    usage.start()
    stack.push_async_callback(usage.close)
    return usage


def _start_monitor(
    stack: AsyncExitStack,
    settings: Settings,
    engines: EngineClient,
    registry: ModelRegistry,
    metrics: Metrics,
) -> None:
    monitor = EngineMonitor(
        engines,
        registry,
        metrics,
        interval=settings.engine_health_interval,
        probe_interval=settings.engine_probe_interval,
        run_dir=settings.run_dir,
    )
    monitor.start()
    stack.push_async_callback(monitor.close)


def _start_limits(
    stack: AsyncExitStack,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics: Metrics,
) -> RateLimiter:
    store = LimitStore(
        settings.redis_url, metrics, settings.ratelimit_retry_seconds, settings.redis_prefix
    )
    stack.push_async_callback(store.close)
    login_policy = LoginPolicy(
        settings.login_failures_per_user,
        settings.login_failures_per_ip,
        settings.login_window_minutes,
    )
    return RateLimiter(store, sessionmaker, metrics, settings.ratelimit_defaults, login_policy)


def _start_pools(
    stack: AsyncExitStack, settings: Settings, registry: ModelRegistry, metrics: Metrics
) -> EnginePools | None:
    """Fair admission per engine (engines/admission/queue.py); None: engines queue themselves."""
    if not settings.engine_fair_queue:
        return None
    pools = EnginePools(
        registry,
        metrics,
        default_slots=settings.engine_default_slots,
        max_waiting=settings.engine_queue_max,
        timeout=settings.engine_queue_timeout,
        redis_url=settings.redis_url if settings.engine_queue_shared else None,
        redis_prefix=settings.redis_prefix,
        lease_seconds=settings.engine_queue_lease_seconds,
    )
    stack.push_async_callback(pools.close)  # gives this gateway's slot leases back at once
    return pools


def _start_jobs(
    app: FastAPI,
    stack: AsyncExitStack,
    manager: EngineManager,
    redis: Redis | None,
    fleet: FleetEvents | None,
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics: Metrics,
) -> None:
    """Fine-tuning jobs (at most one trainer per gateway) and, where this process may run
    engines, the coordinator that runs them while it holds the leader lease."""
    settings: Settings = app.state.settings
    finetune = FinetuneSupervisor(settings, sessionmaker, metrics)
    finetune.start()
    stack.push_async_callback(finetune.close)  # its trainer stops; the job: interrupted
    app.state.finetune = finetune
    if app.state.run_engines:
        coordinator = start_coordinator(settings, manager, redis, fleet, app.state.lease)
        stack.push_async_callback(coordinator.close)  # engines stop, then the lease goes


async def _start_deployments(
    app: FastAPI,
    stack: AsyncExitStack,
    settings: Settings,
    manager: EngineManager,
    sessionmaker: async_sessionmaker[AsyncSession],
    fleet: FleetEvents | None,
) -> Reconciler:
    """Fine-tuned versions deployed fleet-wide (finetune/reconcile.py): this process's
    reconciler, woken by the others' changes, and the admin API's side (``deployer``)."""

    def tell_fleet() -> None:
        if fleet is not None:
            fleet.publish(DEPLOYMENTS_EVENT)

    reconciler = Reconciler(
        settings, manager, DbDesired(sessionmaker), SplitTable(), notify=tell_fleet
    )
    if fleet is not None:
        fleet.on(DEPLOYMENTS_EVENT, lambda _event: reconciler.wake())
    app.state.deployer = Deployer(settings, manager, sessionmaker, reconciler, fleet)
    stack.push_async_callback(reconciler.close)
    await reconciler.start()  # the versions served already are registered before serving
    return reconciler


def _start_generations(
    app: FastAPI,
    stack: AsyncExitStack,
    settings: Settings,
    redis: Redis | None,
    fleet: FleetEvents | None,
    orphans: OrphanSweeper,
) -> GenerationManager:
    """Web-chat generations, which outlive their requests: created last, so they are the
    first to stop, with everything they save through still running."""
    generations = GenerationManager(
        settings.generation_orphan_seconds,
        settings.generation_retain_seconds,
        bus=shared_generations(redis, fleet, settings, orphans),
    )
    generations.start_sweeper()
    generations.listen(fleet)
    drain: Drain = app.state.drain

    async def stop() -> None:
        # Past the drain (or stopped without one): what still runs ends as interrupted,
        # never as a client that left; the generations then save within the budget.
        drain.interrupt()
        await generations.shutdown(drain.budget.lifespan_seconds)

    stack.push_async_callback(stop)
    return generations

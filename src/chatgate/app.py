"""App factory: ``create_app(settings)`` with a lifespan that owns every resource."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate import __version__
from chatgate.admin.router import router as admin_router
from chatgate.anthropic_api.router import router as anthropic_router
from chatgate.auth.cache import IdentityCache
from chatgate.auth.router import router as auth_router
from chatgate.auth.tokens import TokenCodec
from chatgate.chat.answers import OrphanSweeper
from chatgate.chat.generations import GenerationManager
from chatgate.chat.redis_bus import shared_generations
from chatgate.chat.router import router as chat_router
from chatgate.conversations.router import router as conversations_router
from chatgate.datasets.router import router as datasets_router
from chatgate.db.health import DatabaseHealth, install_database_handlers
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.engines import persist
from chatgate.engines.client import EngineClient
from chatgate.engines.coordinator import start_coordinator
from chatgate.engines.endpoint import Endpoint, Timeouts
from chatgate.engines.failover import Upstreams
from chatgate.engines.health import discover_upstream_model
from chatgate.engines.leader import LeaderLease
from chatgate.engines.manager import EngineManager
from chatgate.engines.monitor import EngineMonitor
from chatgate.engines.pool import EnginePools
from chatgate.engines.profiles import ModelProfile, ProfileError, load_profiles
from chatgate.engines.registry import ModelEntry, ModelRegistry, normalise_base_url
from chatgate.engines.router import router as models_router
from chatgate.engines.supervisor import EngineSupervisor
from chatgate.errors import APIError, install_error_handlers
from chatgate.feedback.router import router as feedback_router
from chatgate.finetune.deploy_router import router as deploy_router
from chatgate.finetune.deployments import Deployer
from chatgate.finetune.desired import DbDesired
from chatgate.finetune.gate_router import router as finetune_gate_router
from chatgate.finetune.reconcile import EVENT_KIND as DEPLOYMENTS_EVENT
from chatgate.finetune.reconcile import Reconciler
from chatgate.finetune.router import router as finetune_router
from chatgate.finetune.split import SplitTable
from chatgate.finetune.supervisor import FinetuneSupervisor
from chatgate.fleet import FleetEvents, start_fleet_events
from chatgate.head import HeadAsGet
from chatgate.health.router import router as health_router
from chatgate.hot_routes import HOT_PATHS, HotRoutes, hot_routes
from chatgate.keys.router import router as keys_router
from chatgate.limits.router import router as limits_router
from chatgate.limits.service import LoginPolicy, RateLimiter
from chatgate.limits.store import LimitStore
from chatgate.middleware import DrainGuard, GatewayMiddleware
from chatgate.observability.logging import configure_from_settings, log_usage
from chatgate.observability.metrics import Metrics
from chatgate.observability.router import router as metrics_router
from chatgate.observability.tracing import TracingMiddleware, make_provider
from chatgate.openai_api.router import RELAY_OPENAPI_PATHS
from chatgate.openai_api.router import router as openai_router
from chatgate.openapi_responses import without_fastapi_422
from chatgate.responses_api.router import router as responses_router
from chatgate.runtime import tune_garbage_collector
from chatgate.settings import Settings
from chatgate.shutdown import Drain, ShutdownBudget, SigtermDrain
from chatgate.state import AppState
from chatgate.usage.journal import Journal
from chatgate.usage.outbox import Outbox
from chatgate.usage.record import UsageRecord
from chatgate.usage.router import router as usage_router
from chatgate.usage.service import UsageWriter
from chatgate.users.router import router as users_router
from chatgate.web.router import spa_fallback

log = logging.getLogger("chatgate")
# Response headers browser clients may read: request ids, and what the limits say
# (Retry-After, X-RateLimit-* from limits.service, set by middleware._limit_headers).
CORS_EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-Generation-ID",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-Token-Count-Source",
]


class StartupError(RuntimeError):
    """The configuration is unsafe or incomplete; the message says how to fix it."""


def load_secret(settings: Settings) -> Settings:
    """Fill in the JWT secret persisted in the data dir, if none was configured."""
    if settings.jwt_secret is None and settings.secret_file.is_file():
        secret = settings.secret_file.read_text().strip()
        return settings.model_copy(update={"jwt_secret": SecretStr(secret)})
    return settings


def check_startup_safety(settings: Settings) -> None:
    problem = settings.secret_problem()
    if problem and not settings.development_mode:
        raise StartupError(
            f"Refusing to start: {problem}. Set CHATGATE_JWT_SECRET to at least 32 random "
            "bytes (e.g. `openssl rand -hex 32`) or run `chatgate serve`, which generates one."
        )
    if settings.development_mode and not settings.binds_loopback():
        raise StartupError(
            "Refusing to start: DEVELOPMENT_MODE (auth bypass) only works on a loopback bind, "
            f"not on {settings.host!r}"
        )


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


async def _restore_model_settings(
    sessionmaker: async_sessionmaker[AsyncSession], manager: EngineManager
) -> None:
    async with sessionmaker() as session:
        stored = await persist.load(session)
    for model_id in stored.disabled:
        with contextlib.suppress(APIError):  # a model that is gone stays remembered only
            manager.set_enabled(model_id, False)


async def _discover_upstream_models(engines: EngineClient, registry: ModelRegistry) -> None:
    for endpoint in registry.endpoints():
        upstream = await discover_upstream_model(engines, endpoint)
        if upstream:
            endpoint.upstream_model = upstream


def _start_deployments(
    app: FastAPI,
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
    return reconciler


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    db = make_engine(settings.resolved_database_url)
    sessionmaker = make_sessionmaker(db)
    metrics = Metrics()
    db_health = DatabaseHealth(on_change=lambda up: metrics.database_up.set(int(up)))
    metrics.database_up.set(1)
    outbox = Outbox(
        Journal(settings.journal_dir, settings.journal_max_bytes), sessionmaker, db_health, metrics
    )
    await outbox.replay()  # what a crashed gateway left in the journal, before new rows
    outbox.start()
    orphans = OrphanSweeper(sessionmaker, db_health, settings.answer_lease_seconds)
    orphans.start()
    engines = EngineClient(
        Timeouts.from_settings(settings),
        settings.engine_max_connections,
        on_headers=lambda name, seconds: metrics.engine_latency.labels(name).observe(seconds),
        tracer=app.state.tracer,
    )
    await engines.start()
    profiles: dict[str, ModelProfile] = app.state.profiles
    registry: ModelRegistry = app.state.registry or build_registry(settings, profiles)
    registry.configure_routing(
        settings.engine_circuit_failures,
        settings.engine_circuit_open_seconds,
        settings.engine_affinity_sessions,
    )
    await _discover_upstream_models(engines, registry)

    async def remember_active(profile_id: str) -> None:
        async with sessionmaker() as session:
            await persist.save_active(session, profile_id)

    manager = EngineManager(settings, registry, profiles, on_active=remember_active)
    for profile_id, supervisor in app.state.managed.items():
        manager.adopt(profile_id, supervisor)
    await _restore_model_settings(sessionmaker, manager)

    def on_usage(row: UsageRecord) -> None:
        metrics.observe_usage(row)
        log_usage(row)

    usage = UsageWriter(
        sessionmaker, on_record=on_usage, metrics=metrics, outbox=outbox, health=db_health
    )
    usage.start()
    monitor = EngineMonitor(
        engines,
        registry,
        metrics,
        interval=settings.engine_health_interval,
        probe_interval=settings.engine_probe_interval,
        run_dir=settings.run_dir,
    )
    monitor.start()
    limit_store = LimitStore(
        settings.redis_url, metrics, settings.ratelimit_retry_seconds, settings.redis_prefix
    )
    login_policy = LoginPolicy(
        settings.login_failures_per_user,
        settings.login_failures_per_ip,
        settings.login_window_minutes,
    )
    limiter = RateLimiter(
        limit_store, sessionmaker, metrics, settings.ratelimit_defaults, login_policy
    )
    pools = (
        EnginePools(
            registry,
            metrics,
            default_slots=settings.engine_default_slots,
            max_waiting=settings.engine_queue_max,
            timeout=settings.engine_queue_timeout,
            redis_url=settings.redis_url if settings.engine_queue_shared else None,
            redis_prefix=settings.redis_prefix,
            lease_seconds=settings.engine_queue_lease_seconds,
        )
        if settings.engine_fair_queue
        else None
    )
    drain: Drain = app.state.drain
    upstreams = Upstreams(registry, engines, metrics, pools, drain)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    fleet = start_fleet_events(redis, settings.redis_prefix, manager.set_enabled)
    generations = GenerationManager(
        settings.generation_orphan_seconds,
        settings.generation_retain_seconds,
        bus=shared_generations(redis, fleet, settings, orphans),
    )
    generations.start_sweeper()
    generations.listen(fleet)
    # Fine-tuning jobs (finetune/): at most one trainer process per gateway.
    finetune = FinetuneSupervisor(settings, sessionmaker, metrics)
    finetune.start()
    app.state.finetune = finetune
    coordinator = (
        start_coordinator(settings, manager, redis, fleet, app.state.lease)
        if app.state.run_engines
        else None
    )
    reconciler = _start_deployments(app, settings, manager, sessionmaker, fleet)
    await reconciler.start()  # the versions served already are registered before serving
    # Only development mode may run without a configured secret: tokens then die with it.
    secret = (
        settings.jwt_secret.get_secret_value() if settings.jwt_secret else secrets.token_hex(32)
    )
    app.state.chatgate = AppState(
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
        upstreams=upstreams,
        db_health=db_health,
        outbox=outbox,
        redis=redis,
        fleet=fleet,
        identity_cache=IdentityCache(settings.identity_cache_seconds),
        splits=reconciler.splits,
    )
    if app.state.tune_gc:
        tune_garbage_collector()
    sigterm = SigtermDrain(drain, asyncio.get_running_loop())
    if app.state.drain_on_sigterm:
        sigterm.install()  # the first SIGTERM drains before uvicorn hears of it
    try:
        yield
    finally:
        sigterm.uninstall()
        # Past the drain (or stopped without one): what still runs ends as interrupted,
        # never as a client that left; the generations then save within the budget.
        drain.interrupt()
        await generations.shutdown(drain.budget.lifespan_seconds)
        await finetune.close()  # its trainer stops; the job ends as interrupted
        await monitor.close()
        await reconciler.close()
        if coordinator is not None:
            await coordinator.close()  # engines stop before the lease is given back
        await manager.close()
        await limit_store.close()
        if pools is not None:
            await pools.close()  # gives this gateway's slot leases back at once
        await usage.close()  # flushed: committed, or journaled while the database is away
        await orphans.close()
        await outbox.close()
        await engines.close()
        if app.state.tracer_provider is not None:
            await asyncio.to_thread(app.state.tracer_provider.shutdown)  # flushes spans
        if fleet is not None:
            await fleet.close()
        if redis is not None:
            await redis.aclose()
        await db.dispose()


def create_app(
    settings: Settings | None = None,
    *,
    registry: ModelRegistry | None = None,
    managed: dict[str, EngineSupervisor] | None = None,
    tune_gc: bool = False,
    drain_on_sigterm: bool = False,
    run_engines: bool = False,
    lease: LeaderLease | None = None,
) -> FastAPI:
    """The gateway app. ``managed``: engines the caller started (profile id → supervisor)
    that the app takes over, so an admin can switch them. ``tune_gc``: this process is
    the server (see ``runtime.tune_garbage_collector``), not a test or a tool.
    ``drain_on_sigterm``: run by uvicorn as the real server, whose SIGTERM then drains
    first (``shutdown.SigtermDrain``); never for apps driven through ASGI transports.
    ``run_engines``: this process may run the fleet's local engine when it holds the
    leader ``lease`` (``engines/coordinator.py``; the CLI's, else one of its own), and
    follows the leader otherwise; apps built without it never start engines themselves."""
    settings = load_secret(settings or Settings())
    check_startup_safety(settings)
    try:
        profiles = load_profiles(settings.profiles_dir)
    except ProfileError as exc:
        raise StartupError(f"Refusing to start: {exc}") from exc
    app = FastAPI(
        title="chatgate",
        version=__version__,
        description="Self-hosted LLM chat service and OpenAI-compatible gateway",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.profiles = profiles
    app.state.managed = dict(managed or {})
    app.state.run_engines = run_engines
    app.state.lease = lease
    app.state.tune_gc = tune_gc
    app.state.drain = Drain(ShutdownBudget(settings.shutdown_grace_seconds))
    app.state.drain_on_sigterm = drain_on_sigterm
    install_error_handlers(app)
    install_database_handlers(app)
    for router in (
        openai_router,  # first: routes are matched in order, and /v1 is the hot path
        anthropic_router,
        responses_router,
        health_router,
        admin_router,
        auth_router,
        users_router,
        keys_router,
        models_router,
        conversations_router,
        chat_router,
        metrics_router,
        usage_router,
        limits_router,
        finetune_router,
        finetune_gate_router,
        deploy_router,
        feedback_router,
        datasets_router,
    ):
        app.include_router(router)
    app.router.default = spa_fallback  # only when no route matched
    _document_raw_routes(app)
    app.add_middleware(HeadAsGet)  # HEAD wherever GET is served (uptime monitors)
    app.add_middleware(  # /v1's raw endpoints without the router (hot_routes.py)
        HotRoutes,
        routes=hot_routes(
            [*openai_router.routes, *anthropic_router.routes, *responses_router.routes],
            HOT_PATHS,
        ),
        exception_handlers=app.exception_handlers,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE"],
            # Any request header: the SDKs' sets grow with every release (openai's
            # x-stainless-*, openai-*, anthropic-*, x-api-key) and CORSMiddleware has no
            # prefixes. Who may call is decided by the origin list and the credentials.
            allow_headers=["*"],
            expose_headers=CORS_EXPOSED_HEADERS,
        )
    provider = (
        make_provider(settings.otlp_endpoint, settings.otel_service_name)
        if settings.otlp_endpoint
        else None
    )
    app.state.tracer_provider = provider
    app.state.tracer = provider.get_tracer("chatgate") if provider else None
    if app.state.tracer is not None:
        app.add_middleware(TracingMiddleware, tracer=app.state.tracer)
    app.add_middleware(DrainGuard, drain=app.state.drain)
    app.add_middleware(GatewayMiddleware, max_body_bytes=settings.max_body_bytes)
    return app


def _document_raw_routes(app: FastAPI) -> None:
    """Add the raw ASGI routes, which FastAPI does not see, to the OpenAPI schema."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = without_fastapi_422(generate())  # our validation errors are 400s
        schema["paths"].update(RELAY_OPENAPI_PATHS)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` and multi-worker serving (settings from env)."""
    settings = Settings()
    # Worker processes are spawned fresh: they set up their own logging.
    configure_from_settings(settings)
    return create_app(settings, tune_gc=True, drain_on_sigterm=True)

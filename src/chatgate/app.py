"""App factory: ``create_app(settings)`` with a lifespan that owns every resource."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import SecretStr

from chatgate import __version__
from chatgate.admin.router import router as admin_router
from chatgate.anthropic_api.router import router as anthropic_router
from chatgate.auth.router import router as auth_router
from chatgate.chat.router import router as chat_router
from chatgate.conversations.router import router as conversations_router
from chatgate.datasets.router import router as datasets_router
from chatgate.db.health import install_database_handlers
from chatgate.engines.catalog.profiles import ProfileError, load_profiles
from chatgate.engines.router import router as models_router
from chatgate.engines.runtime.leader import LeaderLease
from chatgate.engines.runtime.supervisor import EngineSupervisor
from chatgate.engines.upstream.registry import ModelRegistry
from chatgate.errors import install_error_handlers
from chatgate.feedback.router import router as feedback_router
from chatgate.finetune.deploy_router import router as deploy_router
from chatgate.finetune.gate_router import router as finetune_gate_router
from chatgate.finetune.router import router as finetune_router
from chatgate.head import HeadAsGet
from chatgate.health.router import router as health_router
from chatgate.hot_routes import HOT_PATHS, HotRoutes, hot_routes
from chatgate.keys.router import router as keys_router
from chatgate.lifespan import lifespan
from chatgate.limits.router import router as limits_router
from chatgate.middleware import DrainGuard, GatewayMiddleware
from chatgate.observability.logging import configure_from_settings
from chatgate.observability.router import router as metrics_router
from chatgate.observability.tracing import TracingMiddleware, make_provider
from chatgate.openai_api.router import RELAY_OPENAPI_PATHS
from chatgate.openai_api.router import router as openai_router
from chatgate.openapi_responses import without_fastapi_422
from chatgate.responses_api.router import router as responses_router
from chatgate.settings import Settings
from chatgate.shutdown import Drain, ShutdownBudget
from chatgate.usage.router import router as usage_router
from chatgate.users.router import router as users_router
from chatgate.web.router import spa_fallback

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
    leader ``lease`` (``engines/runtime/coordinator.py``; the CLI's, else one of its own), and
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

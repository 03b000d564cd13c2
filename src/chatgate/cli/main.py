"""``chatgate`` CLI: serve, background service, users, keys, database, config."""

from __future__ import annotations

import asyncio
import os
import signal
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn

from chatgate.app import StartupError, check_startup_safety, create_app
from chatgate.bench.cli import bench_app
from chatgate.cli import admin, bootstrap, doctor, hardware, service
from chatgate.cli.backup import backup_app
from chatgate.cli.engine_start import EngineStartError, start_engine
from chatgate.cli.limits import limits_app
from chatgate.cli.models import models_app
from chatgate.cli.server_limits import uvicorn_limits
from chatgate.cli.usage import usage_app
from chatgate.engines.supervisor import EngineSupervisor
from chatgate.observability.logging import configure_from_settings
from chatgate.settings import Settings
from chatgate.shutdown import ShutdownBudget

app = typer.Typer(
    help="chatgate: self-hosted LLM chat service",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.config_app, name="config")
app.add_typer(usage_app, name="usage")
app.add_typer(limits_app, name="limits")
app.add_typer(backup_app)  # top-level `chatgate backup` and `chatgate restore`
app.add_typer(bench_app, name="bench")
app.add_typer(models_app, name="models")
hardware.register(app)  # `chatgate hardware`
doctor.register(app)  # `chatgate doctor`
service.register(app)


def say(message: str) -> None:
    typer.echo(f"[chatgate] {message}", err=True)


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _prepare(settings: Settings) -> Settings:
    bootstrap.ensure_data_dir(settings)
    settings = bootstrap.ensure_secret(settings)
    try:
        check_startup_safety(settings)
    except StartupError as exc:
        say(str(exc))
        raise typer.Exit(2) from exc
    say(f"database: {settings.masked()['database_url']} (running migrations)")
    bootstrap.run_migrations(settings)
    password = asyncio.run(bootstrap.ensure_admin(settings))
    if password:
        say("=" * 64)
        say(f"first run: created user 'admin' with password: {password}")
        say("it is shown only once; change it after logging in")
        say("=" * 64)
    return settings


def _startup_engine(settings: Settings) -> tuple[str, EngineSupervisor, str]:
    try:
        return start_engine(settings, say)
    except EngineStartError as exc:
        say(str(exc))
        raise typer.Exit(1) from exc


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _run_uvicorn(settings: Settings, managed: dict[str, EngineSupervisor]) -> None:
    # uvicorn restores the previous handler after its graceful shutdown and re-raises
    # the signal; with this handler that becomes SystemExit, so `serve` still runs its
    # cleanup (stopping the engine) instead of dying on the default action.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "log_config": None,  # our structured logging, not uvicorn's own
        # The app drains on SIGTERM first (shutdown.py); uvicorn's own wait for open
        # connections comes after and is a share of the same grace period's margin.
        "timeout_graceful_shutdown": ShutdownBudget(settings.shutdown_grace_seconds).server_seconds,
    }
    common.update(uvicorn_limits(settings))  # header size and time caps, keep-alive
    if settings.workers > 1:
        # Workers rebuild their settings from the environment.
        os.environ["CHATGATE_ENGINES"] = ",".join(settings.engines)
        os.environ["CHATGATE_JWT_SECRET"] = (
            settings.jwt_secret.get_secret_value() if (settings.jwt_secret) else ""
        )
        os.environ["CHATGATE_HOST"] = settings.host
        uvicorn.run("chatgate.app:app_from_env", factory=True, workers=settings.workers, **common)
        return
    # One process: the app takes the engine over, so admins can switch models.
    app = create_app(settings, managed=managed, tune_gc=True, drain_on_sigterm=True)
    uvicorn.run(app, **common)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080)")] = None,
    workers: Annotated[int | None, typer.Option(help="Gateway worker processes")] = None,
    engine: Annotated[
        list[str] | None,
        typer.Option("--engine", help="Attach an OpenAI-compatible engine: NAME=URL (repeatable)"),
    ] = None,
    no_embedded: Annotated[
        bool, typer.Option("--no-embedded", help="Do not start the embedded llama.cpp engine")
    ] = False,
) -> None:
    """Run the gateway in the foreground (migrations, admin, embedded engine, HTTP)."""
    base = _settings(host=host, port=port, workers=workers)
    configure_from_settings(base)
    settings = _prepare(base)
    engines = [*settings.engines, *(engine or [])]
    managed: dict[str, EngineSupervisor] = {}
    if settings.embedded_engine and not no_embedded:
        profile_id, supervisor, spec = _startup_engine(settings)
        managed[profile_id] = supervisor
        engines.append(spec)
    if not engines:
        say("no engine configured: pass --engine NAME=URL or leave the embedded engine on")
        raise typer.Exit(2)
    settings = settings.model_copy(update={"engines": engines})
    say(f"serving on http://{settings.host}:{settings.port}  (API docs at /docs)")
    try:
        _run_uvicorn(settings, managed)
    finally:
        # A switch may have replaced the engine: the app stopped its own; this one is
        # stopped here (stopping twice is harmless).
        for supervisor in managed.values():
            supervisor.stop()


def main() -> None:
    app()

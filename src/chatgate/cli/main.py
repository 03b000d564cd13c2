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
from chatgate.cli.dataset import dataset_app
from chatgate.cli.engine_start import EngineStartError, seed_fleet, start_engine
from chatgate.cli.finetune import finetune_app, mlflow_app
from chatgate.cli.limits import limits_app
from chatgate.cli.models import models_app
from chatgate.cli.server_limits import uvicorn_limits
from chatgate.cli.usage import usage_app
from chatgate.engines.runtime.leader import LeaderLease, lease_for
from chatgate.engines.runtime.supervisor import EngineSupervisor
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
app.add_typer(finetune_app, name="finetune")
app.add_typer(mlflow_app, name="mlflow")
app.add_typer(dataset_app, name="dataset")
hardware.register(app)  # `chatgate hardware`
doctor.register(app)  # `chatgate doctor`
service.register(app)


WORKER_HEALTHCHECK_SECONDS = 30


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


def _run_uvicorn(
    settings: Settings, managed: dict[str, EngineSupervisor], lease: LeaderLease | None
) -> None:
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
        # Workers rebuild their settings from the environment; one of them takes the
        # leader lease and runs the engine, the others follow it (engines/runtime/coordinator.py).
        os.environ["CHATGATE_ENGINES"] = ",".join(settings.engines)
        os.environ["CHATGATE_JWT_SECRET"] = (
            settings.jwt_secret.get_secret_value() if (settings.jwt_secret) else ""
        )
        os.environ["CHATGATE_HOST"] = settings.host
        os.environ["CHATGATE_EMBEDDED_ENGINE"] = "true" if settings.embedded_engine else "false"
        uvicorn.run(
            "chatgate.cli.engine_start:worker_app",
            factory=True,
            workers=settings.workers,
            # uvicorn kills a worker that does not answer its ping within this; 5 s (its
            # default) is shorter than an import on a loaded host, and a killed leader
            # worker costs the fleet an engine restart.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
            **common,
        )
        return
    # One process: the app takes the engine (and the lease) over, so admins can switch.
    app = create_app(
        settings, managed=managed, tune_gc=True, drain_on_sigterm=True, run_engines=True,
        lease=lease,
    )  # fmt: skip
    uvicorn.run(app, **common)


def _local_engine(settings: Settings) -> tuple[dict[str, EngineSupervisor], LeaderLease | None]:
    """Start the fleet's local engine here if no other process runs it (the leader lease).

    One process: it takes the lease and starts the engine before serving, or follows the
    process that has it. Several workers: one of them will take it; the engine to start is
    written to the fleet state now (if no leader runs), so whichever does starts that one.
    """
    if settings.workers > 1:
        try:
            say(seed_fleet(settings))
        except EngineStartError as exc:
            say(str(exc))
            raise typer.Exit(1) from exc
        return {}, None
    lease = lease_for(
        settings.redis_url, settings.redis_prefix, settings.run_dir,
        settings.engine_leader_lease_seconds,
    )  # fmt: skip
    if not lease.tick():
        say("another chatgate process runs the local engine: this one follows it")
        lease.start()  # and takes over if that process goes away
        return {}, lease
    lease.start()  # keeps the lease while the engine starts (vLLM: minutes)
    try:
        profile_id, supervisor, _spec = _startup_engine(settings)
    except BaseException:
        lease.stop()
        raise
    return {profile_id: supervisor}, lease


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
    if no_embedded:
        settings = settings.model_copy(update={"embedded_engine": False})
    engines = [*settings.engines, *(engine or [])]
    managed: dict[str, EngineSupervisor] = {}
    lease: LeaderLease | None = None
    if settings.embedded_engine:
        managed, lease = _local_engine(settings)
        engines += [f"{pid}={s.base_url.removesuffix('/v1')}" for pid, s in managed.items()]
    elif not engines:
        say("no engine configured: pass --engine NAME=URL or leave the embedded engine on")
        raise typer.Exit(2)
    settings = settings.model_copy(update={"engines": engines})
    say(f"serving on http://{settings.host}:{settings.port}  (API docs at /docs)")
    try:
        _run_uvicorn(settings, managed, lease)
    finally:
        # A switch may have replaced the engine: the app stopped its own; this one is
        # stopped here (stopping twice is harmless), then the lease is given back.
        for supervisor in managed.values():
            supervisor.stop()
        if lease is not None:
            lease.stop()


def main() -> None:
    app()

"""``chatgate`` CLI: serve, background service, users, keys, database, config."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from types import FrameType
from typing import Annotated, Any

import typer
import uvicorn

from chatgate.app import StartupError, check_startup_safety, create_app
from chatgate.bench.cli import bench_app
from chatgate.cli import admin, bootstrap, service
from chatgate.cli.backup import backup_app
from chatgate.cli.limits import limits_app
from chatgate.cli.usage import usage_app
from chatgate.engines.embedded import EngineSetupError, llamacpp_command, locate_smollm2_gguf
from chatgate.engines.supervisor import EngineSupervisor
from chatgate.observability.logging import configure_from_settings
from chatgate.settings import DEFAULT_MODEL_ID, Settings

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
service.register(app)

GRACEFUL_SHUTDOWN_SECONDS = 30


def say(message: str) -> None:
    typer.echo(f"[chatgate] {message}", err=True)


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def start_embedded(settings: Settings) -> EngineSupervisor:
    model_path = settings.embedded_model_path or locate_smollm2_gguf()
    python = settings.engine_python or sys.executable

    def command(port: int) -> list[str]:
        return llamacpp_command(
            python,
            model_path,
            "127.0.0.1",
            port,
            alias=DEFAULT_MODEL_ID,
            threads=settings.embedded_threads,
            n_ctx=settings.embedded_ctx,
        )

    supervisor = EngineSupervisor(
        DEFAULT_MODEL_ID, command, run_dir=settings.run_dir, log_dir=settings.log_dir
    )
    supervisor.start()
    return supervisor


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


def _embedded_engine(settings: Settings) -> tuple[EngineSupervisor, str]:
    try:
        supervisor = start_embedded(settings)
    except EngineSetupError as exc:
        say(f"embedded engine unavailable: {exc}")
        raise typer.Exit(1) from exc
    say(f"starting embedded engine {DEFAULT_MODEL_ID} (llama.cpp) on {supervisor.base_url}")
    if not supervisor.wait_ready(600, progress=say):
        status = supervisor.status()
        supervisor.stop()
        say(f"embedded engine did not become ready: {status.last_error or status.state}")
        say(f"see {settings.log_dir / ('engine-' + DEFAULT_MODEL_ID + '.log')}")
        raise typer.Exit(1)
    say("embedded engine ready")
    return supervisor, f"{DEFAULT_MODEL_ID}={supervisor.base_url.removesuffix('/v1')}"


def _exit_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _run_uvicorn(settings: Settings) -> None:
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
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    if settings.workers > 1:
        # Workers rebuild their settings from the environment.
        os.environ["CHATGATE_ENGINES"] = ",".join(settings.engines)
        os.environ["CHATGATE_JWT_SECRET"] = (
            settings.jwt_secret.get_secret_value() if (settings.jwt_secret) else ""
        )
        os.environ["CHATGATE_HOST"] = settings.host
        uvicorn.run("chatgate.app:app_from_env", factory=True, workers=settings.workers, **common)
        return
    uvicorn.run(create_app(settings), **common)


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
    supervisor: EngineSupervisor | None = None
    if settings.embedded_engine and not no_embedded:
        supervisor, spec = _embedded_engine(settings)
        engines.append(spec)
    if not engines:
        say("no engine configured: pass --engine NAME=URL or leave the embedded engine on")
        raise typer.Exit(2)
    settings = settings.model_copy(update={"engines": engines})
    say(f"serving on http://{settings.host}:{settings.port}  (API docs at /docs)")
    try:
        _run_uvicorn(settings)
    finally:
        if supervisor is not None:
            supervisor.stop()


def main() -> None:
    app()

"""``chatgate finetune start|status|cancel|evaluate|promote|versions`` and ``chatgate mlflow
ui``.

``start`` runs the job in the foreground, as the operator commands work: on the data
dir's database directly (no token needed), through the same supervisor a gateway uses, so
the job is a row the admin API lists, with a lease like a gateway's. It draws a progress
bar from the trainer's JSON log lines; Ctrl-C cancels it. ``cancel`` works for a job any
gateway (or another ``start``) runs: its owner sees the request on its next save.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import click
import typer

from chatgate.cli import bootstrap
from chatgate.cli.hardware import table_lines
from chatgate.db.models import FinetuneJob
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.errors import APIError
from chatgate.finetune import command, gate, jobs, versions
from chatgate.finetune.schemas import JobOut
from chatgate.finetune.supervisor import FinetuneSupervisor, log_path
from chatgate.observability.metrics import Metrics
from chatgate.settings import Settings

finetune_app = typer.Typer(help="LoRA fine-tuning jobs (tools/train, .venv-train)")
mlflow_app = typer.Typer(help="The embedded MLflow tracking store")

POLL_SECONDS = 0.5  # how often the progress bar is redrawn
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON")]


@finetune_app.callback()
def finetune() -> None:
    """LoRA fine-tuning: start a job, follow it, cancel it."""


@mlflow_app.callback()
def mlflow() -> None:
    """MLflow: the tracking store of the fine-tuning runs and the model registry."""


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _prepared() -> Settings:
    settings = Settings()
    bootstrap.ensure_data_dir(settings)
    bootstrap.run_migrations(settings)
    return settings


@finetune_app.command("start")
def start(
    dataset: Annotated[str, typer.Option(help="Chat JSONL file, or a dataset export's id")],
    base: Annotated[str, typer.Option(help="smollm2-135m or an HF model directory")] = (
        "smollm2-135m"
    ),
    epochs: Annotated[int, typer.Option(min=1, max=100)] = 2,
    lr: Annotated[float, typer.Option(min=1e-8, max=1.0, help="Peak learning rate")] = 2e-4,
    rank: Annotated[int, typer.Option(min=1, max=256, help="LoRA rank")] = 16,
    max_steps: Annotated[int | None, typer.Option(min=1, help="Stop after N steps")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=1024)] = 8,
    name: Annotated[
        str | None, typer.Option(help="Registered model: <base>-<name> (default: the dataset's)")
    ] = None,
) -> None:
    """Train a LoRA adapter in the foreground; it ends registered in MLflow as challenger."""
    if name is not None and not re.fullmatch(command.NAME_PATTERN, name):
        raise typer.BadParameter("lower-case letters, digits and dashes", param_hint="--name")
    settings = _prepared()
    try:
        command.check_base(base)
        params = command.JobParams(
            command.resolve_dataset(settings, dataset),
            base,
            epochs,
            lr,
            rank,
            max_steps,
            batch_size,
            name,
        )
        row = asyncio.run(_run(settings, params))
    except APIError as exc:
        raise _fail(exc.message) from exc
    typer.echo(_summary(row))
    if row.status != "succeeded":
        raise typer.Exit(1)


async def _run(settings: Settings, params: command.JobParams) -> FinetuneJob:
    engine = make_engine(settings.resolved_database_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        supervisor = FinetuneSupervisor(settings, sessionmaker, Metrics(), owner_prefix="cli")
        row = await supervisor.submit(params, None)
        typer.echo(f"job {row.id}: log {log_path(settings, row.id)}", err=True)
        loop = asyncio.get_running_loop()
        # Ctrl-C cancels the job (only where signals can be handled: the main thread).
        handled = threading.current_thread() is threading.main_thread()
        if handled:
            loop.add_signal_handler(signal.SIGINT, supervisor.cancel_current)
        try:
            await _draw_progress(supervisor)
            await supervisor.wait()
        finally:
            if handled:
                loop.remove_signal_handler(signal.SIGINT)
        async with sessionmaker() as db:
            return await jobs.get(db, row.id)
    finally:
        await engine.dispose()


async def _draw_progress(supervisor: FinetuneSupervisor) -> None:
    """A bar over the job's steps while it runs (its length once the trainer knows it)."""
    bar: Any = None
    shown = 0
    try:
        while (job := supervisor.current) is not None:
            progress = job.progress
            if bar is None and progress.total_steps:
                bar = click.progressbar(length=progress.total_steps, label="training", file=None)
                bar.__enter__()
            if bar is not None and progress.step > shown:
                bar.label = f"epoch {progress.epoch} loss {progress.loss:.4f}"
                bar.update(progress.step - shown)
                shown = progress.step
            await asyncio.sleep(POLL_SECONDS)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _summary(row: FinetuneJob) -> str:
    line = f"job {row.id}: {row.status}, step {row.step}/{row.total_steps or '?'}"
    if row.loss is not None:
        line += f", loss {row.loss:.4f}"
    if row.model_name:
        line += f"\nregistered {row.model_name} version {row.model_version} (alias challenger)"
        line += f"\nGGUF LoRA: {row.gguf_lora}\nMLflow run: {row.mlflow_run_id}"
    if row.error:
        line += f"\nerror: {row.error}"
    return line


async def _with_db(settings: Settings, job_id: str | None, cancel: bool) -> list[FinetuneJob]:
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            if cancel and job_id is not None:
                return [await jobs.request_cancel(db, job_id)]
            if job_id is not None:
                return [await jobs.get(db, job_id)]
            return await jobs.recent(db)
    finally:
        await engine.dispose()


@finetune_app.command("status")
def status(
    job_id: Annotated[str | None, typer.Argument(help="One job (default: the recent ones)")] = None,
    json_output: JsonOption = False,
) -> None:
    """The recent jobs, or one job with its loss curve."""
    settings = _prepared()
    try:
        rows = asyncio.run(_with_db(settings, job_id, cancel=False))
    except APIError as exc:
        raise _fail(exc.message) from exc
    if json_output:
        items = [JobOut.model_validate(r).model_dump(mode="json") for r in rows]
        if job_id is not None:
            items[0]["curve"] = rows[0].curve
        typer.echo(json.dumps(items[0] if job_id else {"jobs": items}, indent=2))
        return
    if job_id is not None:
        typer.echo(_summary(rows[0]))
        points = [f"{int(s)}:{loss:.4f}" for s, loss in rows[0].curve or []]
        typer.echo("loss: " + (" ".join(points[-20:]) or "none yet"))
        return
    for row in rows:
        typer.echo(f"{row.id}  {row.status:<11} {row.base}  step {row.step}/{row.total_steps}")


@finetune_app.command("cancel")
def cancel(job_id: Annotated[str, typer.Argument(help="The running job")]) -> None:
    """Cancel a running job, wherever it runs (its owner stops it within seconds)."""
    settings = _prepared()
    try:
        asyncio.run(_with_db(settings, job_id, cancel=True))
    except APIError as exc:
        raise _fail(exc.message) from exc
    typer.echo(f"cancel requested for {job_id}")


def ui_argv(settings: Settings, host: str, port: int) -> list[str]:
    """``mlflow server`` on the embedded store (SQLite + files in the data dir)."""
    root = settings.data_dir / "mlflow"
    mlflow_bin = command.train_python(settings).parent / "mlflow"
    return [
        str(mlflow_bin),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--default-artifact-root",
        (root / "artifacts").as_uri(),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",  # one is plenty for one operator's browser (the default is 4)
    ]


@mlflow_app.command("ui")
def ui(
    host: Annotated[str, typer.Option(help="Bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 5000,
) -> None:
    """Serve the embedded MLflow UI (runs, metrics, registered versions) until Ctrl-C."""
    settings = Settings()
    if settings.mlflow_tracking_uri:
        typer.echo(f"tracking server: {settings.masked()['mlflow_tracking_uri']} (open it)")
        return
    argv = ui_argv(settings, host, port)
    if not Path(argv[0]).is_file():
        raise _fail(f"{argv[0]} not found: run `make train-env` (or set CHATGATE_TRAIN_PYTHON)")
    (settings.data_dir / "mlflow" / "artifacts").mkdir(parents=True, exist_ok=True)
    typer.echo(f"MLflow UI on http://{host}:{port} (Ctrl-C stops it)", err=True)
    # The server's background job runner (GenAI evaluation jobs: ~8 worker processes) is
    # not needed to browse runs and versions.
    os.execve(argv[0], argv, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def _verdict_text(result: dict[str, Any]) -> str:
    lines = [f"{result['model']}@{result['version']}: gate {result['gate']}"]
    for split, by in result["scores"].items():
        base, cand = by["base"], by["candidate"]
        lines.append(
            f"  {split} ({cand['count']:.0f}): perplexity {base['perplexity']:.3f} -> "
            f"{cand['perplexity']:.3f}, keyword {base['keyword']:.2f} -> {cand['keyword']:.2f}, "
            f"exact {base['exact']:.2f} -> {cand['exact']:.2f}"
        )
    lines += [f"  - {reason}" for reason in result["reasons"]]
    lines.append(f"  MLflow evaluation run: {result['evaluation_run_id']}")
    return "\n".join(lines)


@finetune_app.command("evaluate")
def evaluate(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION of a registered LoRA version")],
    heldout_limit: Annotated[int | None, typer.Option(min=1, help="First N held-out")] = None,
    regression_limit: Annotated[
        int | None, typer.Option(min=1, help="First N regression questions")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Score a version against its base (held-out split, regression set, leak probe); the
    scores go to MLflow and the version's tag ``gate``. Exit 1 when the gate failed."""
    settings = Settings()
    opts = gate.EvalOptions(heldout_limit, regression_limit)
    try:
        name, version = gate.parse_ref(ref)
        result = asyncio.run(gate.evaluate(settings, name, version, opts))
    except APIError as exc:
        raise _fail(exc.message) from exc
    typer.echo(json.dumps(result, indent=2) if json_output else _verdict_text(result))
    if result["gate"] != "passed":
        raise typer.Exit(1)


@finetune_app.command("promote")
def promote(
    ref: Annotated[str, typer.Argument(help="NAME@VERSION of a registered LoRA version")],
    force: Annotated[bool, typer.Option("--force", help="Even if its gate failed")] = False,
) -> None:
    """Move the alias ``champion`` to a version whose gate passed (or ``--force``); the
    champion it replaces becomes ``previous_champion``."""
    settings = Settings()
    try:
        name, version = gate.parse_ref(ref)
        done = asyncio.run(gate.promote(settings, name, version, force, by=_operator()))
    except APIError as exc:
        raise _fail(exc.message) from exc
    line = f"{name}@{version} is champion"
    if done.get("previous_champion"):
        line += f" (previous champion: version {done['previous_champion']})"
    if done.get("forced"):
        line += f", forced past gate {done['gate']}"
    typer.echo(line)


def _operator() -> str:
    """Who forced a promotion from the command line (the tag ``forced_by``)."""
    return f"cli:{os.environ.get('USER') or os.getuid()}"


def _pair(candidate: float | None, base: float | None, digits: int) -> str:
    """``candidate (base)``: a score of the version beside the base model's."""
    if candidate is None:
        return "-"
    shown = f"{candidate:.{digits}f}"
    return shown if base is None else f"{shown} ({base:.{digits}f})"


def _version_row(version: versions.RegisteredVersion) -> list[str]:
    found = version.evaluation
    gate_text = "-" if found is None else found.gate + (" (forced)" if version.forced_by else "")
    cand = found.candidate if found else versions.EvalScores()
    base = found.base if found else versions.EvalScores()
    created = version.created_at.strftime("%Y-%m-%d %H:%M") if version.created_at else "-"
    return [
        str(version.version),
        ",".join(version.aliases) or "-",
        gate_text,
        _pair(cand.heldout_keyword, base.heldout_keyword, 2),
        _pair(cand.heldout_perplexity, base.heldout_perplexity, 2),
        _pair(cand.regression_keyword, base.regression_keyword, 2),
        _pair(cand.regression_perplexity, base.regression_perplexity, 2),
        "-" if found is None or found.leaks is None else str(found.leaks),
        created,
    ]


VERSION_COLUMNS = ["VERSION", "ALIASES", "GATE", "HELDOUT KW", "HELDOUT PPL", "REGR KW"]
VERSION_COLUMNS += ["REGR PPL", "LEAKS", "CREATED"]


@finetune_app.command("versions")
def list_versions(
    name: Annotated[
        str | None, typer.Argument(help="One fine-tune: BASE:NAME or its registered name")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """The registered versions with their aliases and the evaluation gate's verdict; scores
    are the version's with the base model's in brackets."""
    settings = Settings()
    try:
        found = asyncio.run(versions.list_versions(settings, name))
    except APIError as exc:
        raise _fail(exc.message) from exc
    if json_output:
        typer.echo(json.dumps(found.model_dump(mode="json"), indent=2))
        return
    if not found.models:
        typer.echo(f"no registered version of {name}" if name else "no registered versions")
        return
    for model in found.models:
        typer.echo(f"{model.model or model.name} (MLflow: {model.name})")
        rows = [VERSION_COLUMNS]
        rows += [_version_row(v) for v in model.versions]
        typer.echo("\n".join("  " + line for line in table_lines(rows)))

"""``chatgate dataset``: export rated conversations as a training dataset, list exports."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer

from chatgate.cli import bootstrap
from chatgate.cli.usage import timestamp
from chatgate.datasets import service, store
from chatgate.datasets.filters import RATINGS, DatasetFilter, RatingFilter
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.errors import APIError
from chatgate.settings import Settings

dataset_app = typer.Typer(help="Training datasets from rated conversations", no_args_is_help=True)


@dataset_app.callback()
def dataset() -> None:
    """Training datasets: rated answers, scrubbed, deduplicated, split, versioned by hash."""


async def _export(settings: Settings, flt: DatasetFilter) -> dict[str, Any]:
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            return await service.export(
                db, settings.data_dir, flt, settings.training_default_opt_in
            )
    finally:
        await engine.dispose()


def _copy_to(settings: Settings, version: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in store.FILES:
        shutil.copyfile(store.file_path(settings.data_dir, version, name), out / name)


@dataset_app.command("export")
def export(
    rating: Annotated[
        str, typer.Option(help="endorsed (up or corrected), up, down, corrected or any")
    ] = "endorsed",
    model: Annotated[str | None, typer.Option(help="Only answers by this model id")] = None,
    since: Annotated[str | None, typer.Option(help="Answers from this ISO date/time")] = None,
    until: Annotated[str | None, typer.Option(help="Answers before this ISO date/time")] = None,
    user: Annotated[
        list[str] | None, typer.Option("--user", help="Only this username (repeatable)")
    ] = None,
    min_chars: Annotated[int, typer.Option(help="Minimum answer length in characters")] = 1,
    holdout: Annotated[float, typer.Option(help="Share held out for evaluation (0-0.5)")] = 0.1,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also copy the files to this folder")
    ] = None,
) -> None:
    """Export rated answers of users who did not opt out: train.jsonl, heldout.jsonl and
    metadata.json under <data dir>/datasets/<version>. Prints the metadata as JSON."""
    if rating not in RATINGS:
        raise typer.BadParameter(f"one of {', '.join(RATINGS)}", param_hint="--rating")
    chosen: RatingFilter = rating  # checked just above
    settings = Settings()
    try:
        flt = DatasetFilter(
            rating=chosen,
            model=model,
            since=timestamp(since, "--since"),
            until=timestamp(until, "--until"),
            usernames=tuple(sorted(set(user or []))),
            min_chars=min_chars,
            holdout=holdout,
        )
        bootstrap.ensure_data_dir(settings)
        bootstrap.run_migrations(settings)
        metadata = asyncio.run(_export(settings, flt))
        if out is not None:
            _copy_to(settings, metadata["version"], out)
    except APIError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(metadata, indent=2, ensure_ascii=False))
    where = out or store.folder(settings.data_dir, metadata["version"])
    counts = metadata["counts"]
    typer.echo(
        f"dataset {metadata['version']}: {counts['train']} train, {counts['heldout']} held out "
        f"-> {where}",
        err=True,
    )


@dataset_app.command("list")
def list_datasets() -> None:
    """The exported datasets, newest first: version, created, train/held-out counts."""
    settings = Settings()
    for metadata in store.list_all(settings.data_dir):
        counts = metadata.get("counts", {})
        typer.echo(
            f"{metadata['version']}  {metadata.get('created_at', '')}  "
            f"train={counts.get('train', 0)} heldout={counts.get('heldout', 0)}"
        )

"""``chatgate usage export``: usage rows as CSV or JSON lines, read in batches."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, TextIO

import typer

from chatgate.cli import bootstrap
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.errors import APIError
from chatgate.settings import Settings
from chatgate.usage import queries
from chatgate.usage.queries import UsageEntry, UsageFilter
from chatgate.users import service as users

usage_app = typer.Typer(help="Usage accounting", no_args_is_help=True)


@usage_app.callback()
def usage() -> None:
    """Usage accounting: one row per chat and /v1 request."""


Format = Literal["csv", "jsonl"]


def timestamp(value: str | None, option: str) -> datetime | None:
    """A CLI option's ISO 8601 date or time (shared by the commands that filter by time)."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError as exc:
        message = f"not an ISO 8601 date or time: {value!r}"
        raise typer.BadParameter(message, param_hint=option) from exc


@contextmanager
def _output(out: str) -> Iterator[TextIO]:
    if out == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    with Path(out).open("w", encoding="utf-8", newline="") as handle:
        yield handle


def _row_writer(handle: TextIO, fmt: Format) -> Callable[[UsageEntry], None]:
    if fmt == "jsonl":

        def write_json(entry: UsageEntry) -> None:
            handle.write(json.dumps(entry.as_dict(), default=_json_default) + "\n")

        return write_json
    writer = csv.writer(handle)
    writer.writerow(queries.FIELDS)

    def write_csv(entry: UsageEntry) -> None:
        writer.writerow(queries.csv_values(entry))

    return write_csv


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


async def _export(
    settings: Settings, flt: UsageFilter, username: str | None, out: str, fmt: Format
) -> int:
    engine = make_engine(settings.resolved_database_url)
    try:
        sessionmaker = make_sessionmaker(engine)
        if username is not None:
            async with sessionmaker() as db:
                user = await users.get_by_username(db, username)
            flt = dataclasses.replace(flt, user_id=user.id)
        count = 0
        with _output(out) as handle:
            write = _row_writer(handle, fmt)
            async for batch in queries.iter_rows(sessionmaker, flt):
                for entry in batch:
                    write(entry)
                count += len(batch)
        return count
    finally:
        await engine.dispose()


@usage_app.command("export")
def export(
    out: Annotated[str, typer.Option("--out", "-o", help="File to write, or - for stdout")] = "-",
    since: Annotated[
        str | None, typer.Option(help="From this ISO date/time (inclusive; UTC if no zone)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Before this ISO date/time (exclusive; UTC if no zone)")
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this username")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model")] = None,
    status: Annotated[
        str | None, typer.Option(help="ok, error, cancelled, interrupted or rejected")
    ] = None,
    route: Annotated[str | None, typer.Option(help="Only this route, e.g. v1.chat")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="csv or jsonl")] = "csv",
) -> None:
    """Export usage rows, newest first (every user's: this is an operator command)."""
    if status is not None and status not in queries.STATUSES:
        raise typer.BadParameter(f"one of {', '.join(queries.STATUSES)}", param_hint="--status")
    settings = Settings()
    try:
        flt = UsageFilter(
            model=model,
            status=status,
            route=route,
            since=timestamp(since, "--since"),
            until=timestamp(until, "--until"),
        )
        bootstrap.ensure_data_dir(settings)
        bootstrap.run_migrations(settings)
        count = asyncio.run(_export(settings, flt, user, out, fmt))
    except APIError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    destination = "stdout" if out == "-" else out
    typer.echo(f"exported {count} usage rows to {destination}", err=True)

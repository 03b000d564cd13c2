"""``chatgate limits``: show and set limits per role, user or API key."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer

from chatgate.cli import bootstrap
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.errors import APIError
from chatgate.limits import admin
from chatgate.settings import Settings
from chatgate.users import service as users

limits_app = typer.Typer(help="Rate limits and token budgets", no_args_is_help=True)

OPTION_FIELDS = {
    "rpm": "requests_per_minute",
    "tpm": "tokens_per_minute",
    "concurrent": "concurrent_streams",
    "tokens_day": "tokens_per_day",
    "tokens_month": "tokens_per_month",
}
Limit = Annotated[str | None, typer.Option(help="A number, or 'unlimited'")]


def _parse(value: str) -> int | None:
    if value.strip().lower() in ("unlimited", "none", "null"):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is neither a number nor 'unlimited'") from exc


def _parse_weight(value: str) -> float | None:
    if value.strip().lower() in ("unset", "none", "null"):
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is neither a number nor 'unset'") from exc


async def _apply(settings: Settings, target: dict[str, Any], changes: dict[str, Any]) -> Any:
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            if target["role"]:
                return await admin.set_role_limits(db, target["role"], changes)
            if target["user"]:
                user = await users.get_by_username(db, target["user"])
                return await admin.set_user_limits(db, user.id, changes)
            return await admin.set_key_limits(db, target["key"], changes)
    finally:
        await engine.dispose()


@limits_app.command("set")
def set_limits(
    role: Annotated[str | None, typer.Option(help="user or admin")] = None,
    user: Annotated[str | None, typer.Option(help="A username")] = None,
    key: Annotated[int | None, typer.Option(help="An API key id")] = None,
    rpm: Limit = None,
    tpm: Limit = None,
    concurrent: Limit = None,
    tokens_day: Limit = None,
    tokens_month: Limit = None,
    weight: Annotated[
        str | None, typer.Option(help="Share of a busy engine (default 1), or 'unset'")
    ] = None,
    priority: Annotated[
        str | None, typer.Option(help="Queue class of /v1 requests: interactive, api, batch")
    ] = None,
) -> None:
    """Set limits; fields not given keep their value, 'unlimited' removes a limit."""
    if sum(target is not None for target in (role, user, key)) != 1:
        raise typer.BadParameter("name exactly one of --role, --user or --key")
    given = {
        "rpm": rpm,
        "tpm": tpm,
        "concurrent": concurrent,
        "tokens_day": tokens_day,
        "tokens_month": tokens_month,
    }
    changes: dict[str, Any] = {
        OPTION_FIELDS[k]: _parse(v) for k, v in given.items() if v is not None
    }
    if weight is not None:
        changes["queue_weight"] = _parse_weight(weight)
    if priority is not None:
        changes["queue_priority"] = None if priority == "unset" else priority
    if not changes:
        raise typer.BadParameter("give at least one limit, e.g. --rpm 60 or --weight 2")
    settings = Settings()
    bootstrap.ensure_data_dir(settings)
    bootstrap.run_migrations(settings)
    try:
        result = asyncio.run(_apply(settings, {"role": role, "user": user, "key": key}, changes))
    except APIError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result, indent=2, sort_keys=True))

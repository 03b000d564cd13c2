"""Operator commands: ``users``, ``keys``, ``db``, ``config``."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.auth.passwords import MIN_PASSWORD_LENGTH, generate_password
from chatgate.auth.scopes import SCOPE_PREFIXES
from chatgate.cli import bootstrap
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.errors import APIError
from chatgate.keys import service as keys
from chatgate.settings import Settings
from chatgate.users import service as users

users_app = typer.Typer(help="Manage user accounts", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance", no_args_is_help=True)
config_app = typer.Typer(help="Configuration", no_args_is_help=True)

T = TypeVar("T")


def _with_db(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    settings = Settings()
    bootstrap.ensure_data_dir(settings)
    bootstrap.run_migrations(settings)

    async def runner() -> T:
        engine = make_engine(settings.resolved_database_url)
        try:
            async with make_sessionmaker(engine)() as db:
                return await work(db)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(runner())
    except APIError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from exc


def _ask_password(given: str | None) -> tuple[str, bool]:
    """(password, generated?) from the option, an interactive prompt, or generated."""
    if given:
        password = given
    elif typer.get_text_stream("stdin").isatty():
        password = getpass.getpass("Password (empty: generate one): ")
    else:
        password = ""
    if not password:
        return generate_password(), True
    if len(password) < MIN_PASSWORD_LENGTH:
        typer.echo(f"error: passwords need at least {MIN_PASSWORD_LENGTH} characters", err=True)
        raise typer.Exit(1)
    return password, False


@users_app.command("add")
def users_add(
    username: str,
    password: Annotated[str | None, typer.Option(help="Password (prompted or generated)")] = None,
    role: Annotated[str, typer.Option(help="user or admin")] = "user",
    email: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a user."""
    if role not in ("user", "admin"):
        raise typer.BadParameter("role must be 'user' or 'admin'")
    secret, generated = _ask_password(password)
    user = _with_db(lambda db: users.create_user(db, username, secret, role=role, email=email))
    typer.echo(f"created {user.role} '{user.username}' (id {user.id})")
    if generated:
        typer.echo(f"password: {secret}")


@users_app.command("list")
def users_list() -> None:
    """List users."""
    rows = _with_db(users.list_users)
    typer.echo(f"{'id':>4}  {'username':<24} {'role':<6} {'state':<8} created")
    for user in rows:
        state = "disabled" if user.disabled else "active"
        typer.echo(
            f"{user.id:>4}  {user.username:<24} {user.role:<6} {state:<8} "
            f"{user.created_at:%Y-%m-%d %H:%M}"
        )


@users_app.command("passwd")
def users_passwd(
    username: str,
    password: Annotated[
        str | None, typer.Option(help="New password (prompted or generated)")
    ] = None,
) -> None:
    """Set a user's password (ends their login sessions)."""
    secret, generated = _ask_password(password)

    async def work(db: AsyncSession) -> None:
        await users.set_password(db, await users.get_by_username(db, username), secret)

    _with_db(work)
    typer.echo(f"password of '{username}' changed" + (f": {secret}" if generated else ""))


@users_app.command("disable")
def users_disable(
    username: str, enable: Annotated[bool, typer.Option("--enable", help="Re-enable")] = False
) -> None:
    """Disable (or --enable) a user."""

    async def work(db: AsyncSession) -> None:
        await users.set_disabled(db, await users.get_by_username(db, username), not enable)

    _with_db(work)
    typer.echo(f"'{username}' {'enabled' if enable else 'disabled'}")


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option("--user", help="Owner's username")],
    name: Annotated[str, typer.Option("--name", help="A name to recognise the key by")],
    expires_days: Annotated[int | None, typer.Option(help="Expire after N days")] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help=f"Limit the key (repeatable): {', '.join(SCOPE_PREFIXES)}"),
    ] = None,
) -> None:
    """Create an API key and print it (shown only once)."""
    expires = datetime.now(UTC) + timedelta(days=expires_days) if expires_days else None
    unknown = set(scope or ()) - set(SCOPE_PREFIXES)
    if unknown:
        raise typer.BadParameter(f"unknown scope(s): {', '.join(sorted(unknown))}")

    async def work(db: AsyncSession) -> str:
        owner = await users.get_by_username(db, user)
        _, plaintext = await keys.create_key(
            db, owner.id, name, expires_at=expires, scopes=scope or []
        )
        return plaintext

    typer.echo(_with_db(work))


@keys_app.command("list")
def keys_list(user: Annotated[str, typer.Option("--user")]) -> None:
    """List a user's API keys (prefixes only)."""

    async def work(db: AsyncSession) -> list[str]:
        owner = await users.get_by_username(db, user)
        return [
            f"{k.id:>4}  {k.prefix}…  {k.name:<24} {'revoked' if k.revoked_at else 'active'}"
            for k in await keys.list_keys(db, owner.id)
        ]

    for line in _with_db(work):
        typer.echo(line)


@keys_app.command("revoke")
def keys_revoke(key_id: int, user: Annotated[str, typer.Option("--user")]) -> None:
    """Revoke an API key by id."""

    async def work(db: AsyncSession) -> None:
        owner = await users.get_by_username(db, user)
        await keys.revoke_key(db, owner.id, key_id)

    _with_db(work)
    typer.echo(f"key {key_id} revoked")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    settings = Settings()
    bootstrap.ensure_data_dir(settings)
    bootstrap.run_migrations(settings)
    typer.echo(f"database at head: {settings.masked()['database_url']}")


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration, secrets masked."""
    typer.echo(json.dumps(Settings().masked(), indent=2, default=str))

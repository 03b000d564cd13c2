"""First-run preparation: data dir, JWT secret, migrations, admin account."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from chatgate.auth.passwords import generate_password
from chatgate.db import migrate
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.settings import Settings
from chatgate.users import service as users

ADMIN_USERNAME = "admin"


def ensure_data_dir(settings: Settings) -> None:
    for path in (settings.data_dir, settings.run_dir, settings.log_dir):
        path.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)


def ensure_secret(settings: Settings) -> Settings:
    """Use the configured secret, else the persisted one, else generate and persist one."""
    if settings.jwt_secret is not None:
        return settings
    path: Path = settings.secret_file
    if not path.is_file():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return settings.model_copy(update={"jwt_secret": SecretStr(path.read_text().strip())})


def run_migrations(settings: Settings) -> None:
    migrate.upgrade(settings.resolved_database_url)


async def ensure_admin(settings: Settings) -> str | None:
    """Create the admin on first run; returns a generated password to show once."""
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            if await users.count_users(db) > 0:
                return None
            configured = settings.admin_password
            password = configured.get_secret_value() if configured else generate_password()
            await users.create_user(db, ADMIN_USERNAME, password, role="admin")
            return None if configured else password
    finally:
        await engine.dispose()

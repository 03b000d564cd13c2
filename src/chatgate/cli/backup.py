"""``chatgate backup`` / ``chatgate restore``: a consistent copy of the database and JWT secret.

SQLite: SQLite's online backup API (``sqlite3.Connection.backup``) copies the live database
page by page while the gateway keeps serving; the copy and the JWT secret are packed into a
``.tar.gz`` with a small manifest. PostgreSQL: ``pg_dump --format=custom`` (when it is on PATH)
goes into the same kind of archive, and ``restore`` feeds it to ``pg_restore``.

The archive holds the JWT secret: it is written with mode 0600; keep it like a password.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import make_url

from chatgate.settings import Settings

backup_app = typer.Typer(help="Backup and restore", no_args_is_help=True)

DB_MEMBER = "chatgate.db"
DUMP_MEMBER = "chatgate.pgdump"
SECRET_MEMBER = "jwt_secret"
MANIFEST_MEMBER = "manifest.json"
FORMAT_VERSION = 1


class BackupError(Exception):
    """A backup or restore that cannot proceed; the message says what to do."""


def say(message: str) -> None:
    typer.echo(f"[chatgate] {message}", err=True)


def sqlite_path(url: str) -> Path:
    """The file behind a ``sqlite[+driver]:///path`` URL."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"{url!r} is not a file-backed SQLite database")
    return Path(database)


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without the password (which goes into PGPASSWORD, not argv)."""
    parsed = make_url(url).set(drivername="postgresql")
    env = dict(os.environ)
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(password=None)
    return plain.render_as_string(hide_password=False), env


def _default_out() -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Path(f"chatgate-backup-{stamp}.tar.gz")


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    info.mtime = int(datetime.now(UTC).timestamp())
    tar.addfile(info, io.BytesIO(data))


def _pack(out: Path, kind: str, payload: tuple[str, Path], secret: Path) -> None:
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "created_at": datetime.now(UTC).isoformat(),
        "jwt_secret": secret.is_file(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        _add_bytes(tar, MANIFEST_MEMBER, json.dumps(manifest, indent=2).encode())
        _add_bytes(tar, payload[0], payload[1].read_bytes())
        if secret.is_file():
            _add_bytes(tar, SECRET_MEMBER, secret.read_bytes())


def backup_sqlite(source: Path, target: Path) -> None:
    """Copy a (possibly live) SQLite database with the online backup API."""
    if not source.is_file():
        raise BackupError(f"no SQLite database at {source}")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()


def create_backup(settings: Settings, out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="chatgate-backup-") as tmp:
        if settings.is_sqlite:
            copy = Path(tmp) / DB_MEMBER
            backup_sqlite(sqlite_path(settings.resolved_database_url), copy)
            _pack(out, "sqlite", (DB_MEMBER, copy), settings.secret_file)
        else:
            pg_dump = shutil.which("pg_dump")
            if pg_dump is None:
                raise BackupError(
                    "pg_dump is not on PATH. Install the PostgreSQL client (Debian: "
                    "apt-get install postgresql-client) or run it yourself: "
                    "pg_dump --format=custom --no-owner --file chatgate.pgdump "
                    "postgresql://USER@HOST:5432/DB"
                )
            dump = Path(tmp) / DUMP_MEMBER
            url, env = _libpq(settings.resolved_database_url)
            command = [pg_dump, "--format=custom", "--no-owner", "--file", str(dump), url]
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
            _pack(out, "postgresql", (DUMP_MEMBER, dump), settings.secret_file)
    return out


def _read_archive(archive: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Manifest and members, read by name (nothing is extracted to disk paths from the tar)."""
    if not archive.is_file():
        raise BackupError(f"no backup file at {archive}")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for name in (MANIFEST_MEMBER, DB_MEMBER, DUMP_MEMBER, SECRET_MEMBER):
                try:
                    handle = tar.extractfile(name)
                except KeyError:
                    continue
                if handle is not None:
                    members[name] = handle.read()
    except (tarfile.TarError, OSError) as exc:
        raise BackupError(f"{archive} is not a chatgate backup: {exc}") from exc
    if MANIFEST_MEMBER not in members:
        raise BackupError(f"{archive} is not a chatgate backup (no {MANIFEST_MEMBER})")
    manifest: dict[str, Any] = json.loads(members[MANIFEST_MEMBER])
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupError(f"unsupported backup format {manifest.get('format')!r}")
    return manifest, members


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.restore")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _restore_secret(members: dict[str, bytes], secret: Path, force: bool) -> None:
    data = members.get(SECRET_MEMBER)
    if data is None:
        return
    if secret.is_file() and secret.read_bytes() != data and not force:
        raise BackupError(f"{secret} exists and differs from the backup's; pass --force")
    _write_private(secret, data)


def restore_sqlite(members: dict[str, bytes], target: Path, secret: Path, force: bool) -> None:
    if DB_MEMBER not in members:
        raise BackupError(f"the backup holds no {DB_MEMBER}")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.restore")
    staged.write_bytes(members[DB_MEMBER])
    os.chmod(staged, 0o600)
    check = sqlite3.connect(staged)
    try:
        verdict = check.execute("PRAGMA integrity_check").fetchone()
    finally:
        check.close()
    if not verdict or verdict[0] != "ok":
        staged.unlink()
        raise BackupError(f"the backed-up database fails integrity_check: {verdict}")
    _restore_secret(members, secret, force)
    for suffix in ("-wal", "-shm", "-journal"):  # stale journals of the replaced database
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    os.replace(staged, target)


def restore_postgres(members: dict[str, bytes], url: str, secret: Path, force: bool) -> None:
    pg_restore = shutil.which("pg_restore")
    if pg_restore is None:
        raise BackupError(
            "pg_restore is not on PATH. Install the PostgreSQL client (Debian: apt-get install "
            "postgresql-client), or extract chatgate.pgdump from the archive and run: "
            "pg_restore --no-owner --clean --if-exists --dbname postgresql://USER@HOST/DB "
            "chatgate.pgdump"
        )
    if DUMP_MEMBER not in members:
        raise BackupError(f"the backup holds no {DUMP_MEMBER}")
    libpq_url, env = _libpq(url)
    psql = shutil.which("psql")
    if psql is not None and not force:
        probe = subprocess.run(
            [psql, "-At", "-c", "select count(*) from pg_tables where schemaname='public'",
             libpq_url],
            env=env, capture_output=True, text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() not in ("", "0"):
            raise BackupError("the target database already has tables; pass --force")
    with tempfile.TemporaryDirectory(prefix="chatgate-restore-") as tmp:
        dump = Path(tmp) / DUMP_MEMBER
        dump.write_bytes(members[DUMP_MEMBER])
        command = [pg_restore, "--no-owner", "--exit-on-error", "--dbname", libpq_url]
        if force:
            command[1:1] = ["--clean", "--if-exists"]
        result = subprocess.run([*command, str(dump)], env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise BackupError(f"pg_restore failed: {result.stderr.strip()}")
    _restore_secret(members, secret, force)


def restore_backup(
    settings: Settings, archive: Path, data_dir: Path | None, force: bool
) -> str:
    manifest, members = _read_archive(archive)
    kind = manifest.get("kind")
    directory = data_dir or settings.data_dir
    secret = directory / SECRET_MEMBER
    directory.mkdir(parents=True, exist_ok=True)
    if kind == "sqlite":
        if data_dir is not None or not settings.is_sqlite:
            target = directory / DB_MEMBER
        else:
            target = sqlite_path(settings.resolved_database_url)
        restore_sqlite(members, target, secret, force)
        return str(target)
    if kind == "postgresql":
        if settings.is_sqlite:
            raise BackupError(
                "this is a PostgreSQL backup: set CHATGATE_DATABASE_URL to the target database"
            )
        restore_postgres(members, settings.resolved_database_url, secret, force)
        return "PostgreSQL database"
    raise BackupError(f"unknown backup kind {kind!r}")


@backup_app.command()
def backup(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Archive to write (default chatgate-backup-<UTC time>.tar.gz)"),
    ] = None,
) -> None:
    """Back up the database (SQLite online backup or pg_dump) and the JWT secret."""
    settings = Settings()
    target = out or _default_out()
    try:
        create_backup(settings, target)
    except BackupError as exc:
        say(str(exc))
        raise typer.Exit(1) from exc
    say(f"backup written to {target} (it contains the JWT secret: keep it private)")


@backup_app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="Archive written by `chatgate backup`")],
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Restore into this data directory (SQLite backups)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing database and secret")
    ] = False,
) -> None:
    """Restore a backup into the data directory (SQLite) or the configured PostgreSQL."""
    settings = Settings()
    try:
        where = restore_backup(settings, file, data_dir, force)
    except BackupError as exc:
        say(str(exc))
        raise typer.Exit(1) from exc
    say(f"restored {file} into {where}; run `chatgate db upgrade` if it came from an older version")

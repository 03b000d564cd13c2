"""A private PostgreSQL for outage tests: its own initdb cluster on a free port, stopped
and started at will, never the machine's shared server.

PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres``
user and its commands run through ``runuser``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port, missing

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def pg_bin(name: str) -> str | None:
    for directory in BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    return shutil.which(name)


def _as_owner(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@dataclass
class PrivatePostgres:
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        ctl = pg_bin("pg_ctl")
        assert ctl is not None
        command = [ctl, "-D", str(self.data), "-w", "-t", "60", *args]
        subprocess.run(_as_owner(command), check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-l", str(self.root / "server.log"), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends the sessions and stops; ``immediate`` is a crash."""
        self._ctl("-m", mode, "stop")


def _available() -> bool:
    if pg_bin("initdb") is None or pg_bin("pg_ctl") is None:
        return False
    return os.geteuid() != 0 or shutil.which("runuser") is not None


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not _available():
        # Skipped only outside CI (the Makefile installs them); under CI=true a failure.
        missing("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="chatgate-pg-"))
    root.chmod(0o755)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    initdb = pg_bin("initdb")
    assert initdb is not None
    command = [initdb, "-D", str(root / "data"), "-U", "postgres", "-A", "trust", "--no-sync"]
    subprocess.run(_as_owner(command), check=True, capture_output=True, timeout=120)
    server = PrivatePostgres(root, free_port())
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(root, ignore_errors=True)

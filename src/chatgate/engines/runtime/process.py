"""Process and file plumbing for supervised engines.

File names for an engine's state file and log, port picking, log tail and rotation, exit
descriptions, atomic JSON writes, and spawning a child in its own session that gets SIGTERM when
its spawning thread dies (``PR_SET_PDEATHSIG``, Linux only).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("chatgate.engines")

LOG_ROTATE_BYTES = 10 * 1024 * 1024
LOG_TAIL_BYTES = 4096
LOG_TAIL_LINES = 8
PR_SET_PDEATHSIG = 1


def state_file_for(run_dir: Path, name: str) -> Path:
    return run_dir / f"engine-{name}.json"


def log_file_for(log_dir: Path, name: str) -> Path:
    return log_dir / f"engine-{name}.log"


def pick_free_port(host: str) -> int:
    """A port the kernel reports free right now (bind to port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now.

    SO_REUSEADDR mirrors what uvicorn does, so TIME_WAIT leftovers of a killed
    engine do not count as "in use" while a live listener does.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def read_log_tail(path: Path, max_lines: int = LOG_TAIL_LINES) -> str:
    """The last non-empty lines of a log file ('' if it cannot be read)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            data = handle.read()
    except OSError as exc:
        log.warning("could not read engine log %s: %s", path, exc)
        return ""
    lines = [line for line in data.decode("utf-8", "replace").splitlines() if line.strip()]
    return "\n".join(lines[-max_lines:])


def rotate_log(path: Path) -> None:
    """Keep one previous log so a crash-looping engine cannot fill the disk."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size > LOG_ROTATE_BYTES:
        os.replace(path, path.with_name(path.name + ".1"))


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    """Readers see either the old or the new file, never a half-written one."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def parent_death_hook() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGTERM when its spawning thread dies.

    libc and prctl are resolved here, in the parent, so the forked child only
    makes the call and never loads anything while other threads may hold locks.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent_pid = os.getpid()

    def set_parent_death_signal() -> None:
        if prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(errno)}")
        # The parent may have died between fork() and prctl(); nothing would signal us then.
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


def spawn_in_new_session(
    argv: list[str], output: IO[bytes] | None, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start argv leading its own process group, tied to the calling thread's life.

    stdout and stderr go to output (or nowhere); stdin is /dev/null.
    """
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=output if output is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if output is not None else subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **extra_env},
        start_new_session=True,
        preexec_fn=parent_death_hook(),
    )


def signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Signal a whole process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True

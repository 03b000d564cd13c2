"""Processes of the background gateway: liveness, process groups, signals, detached spawn.

Liveness checks read ``/proc/<pid>/stat`` where there is one, so a zombie or a pid reused by an
unrelated process does not count as our gateway (or engine) still running.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import typer

POLL_SECONDS = 0.25
KILL_GRACE_SECONDS = 10.0


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None when unavailable (gone/non-Linux).

    Index 0 is the state, 2 the process group, 19 the start time in clock ticks since boot.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses, so split after its last ")".
    return raw.rpartition(")")[2].split()


def process_start_ticks(pid: int) -> int | None:
    stat = _proc_stat(pid)
    return int(stat[19]) if stat else None


def process_started_epoch(pid: int) -> float | None:
    ticks = process_start_ticks(pid)
    if ticks is None:
        return None
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    return None


def reap_if_child(pid: int) -> bool:
    """Collect pid's exit status if it is our child; True when it has exited.

    Without this a gateway started from this very process (tests, `restart`) would linger as a
    zombie that still answers kill(pid, 0).
    """
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether pid runs, and (when start_ticks is known) is still the process we recorded."""
    if pid <= 0 or reap_if_child(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists but belongs to another user
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: kill(pid, 0) is all we can know
    if stat[0] in ("Z", "X"):
        return False
    # A different start time means the pid was reused by an unrelated process.
    return start_ticks is None or int(stat[19]) == start_ticks


def group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in process group pgid."""
    reap_if_child(pgid)
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat and stat[2] == str(pgid) and stat[0] not in ("Z", "X"):
                return True
    return False


def is_group_leader(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def signal_target(pid: int, sig: signal.Signals, group: bool) -> None:
    """Signal pid's whole process group (as `start` arranges it to lead one), or just pid."""
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it exited between our check and the signal: the outcome we want


def wait_for_exit(pid: int, timeout: float, group: bool) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not (group_alive(pid) if group else pid_alive(pid)):
            return True
        time.sleep(POLL_SECONDS)
    return False


def terminate(pid: int, timeout: float, label: str) -> bool:
    """SIGTERM pid (and its group), SIGKILL after timeout; True once all of it is gone."""
    # Decide before signalling: once the leader has exited its group can no longer be looked up,
    # but the rest of the group may still be running.
    group = is_group_leader(pid)
    signal_target(pid, signal.SIGTERM, group)
    if wait_for_exit(pid, timeout, group):
        return True
    typer.echo(f"{label} did not stop within {timeout:g}s; sending SIGKILL")
    signal_target(pid, signal.SIGKILL, group)
    return wait_for_exit(pid, KILL_GRACE_SECONDS, group)


def spawn_detached(command: list[str], log_path: Path) -> int:
    """Start command in a new session with stdin from /dev/null and output appended to log_path.

    posix_spawn (rather than subprocess.Popen) leaves no Popen object behind to warn that the
    child "is still running" when this short-lived CLI process lets go of it.
    """
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    env = dict(os.environ, PYTHONUNBUFFERED="1")  # log lines reach the file as they happen
    try:
        return os.posix_spawnp(
            command[0],
            command,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, fd, 1),
                (os.POSIX_SPAWN_DUP2, fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(fd)

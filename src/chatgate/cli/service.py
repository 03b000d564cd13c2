"""Run the gateway as a background service: start, stop, restart, status, logs.

`chatgate start` launches `chatgate serve` detached in its own session (so one signal to the process
group reaches everything it started), records it in ``run_dir/chatgate.pid`` and appends its output
to ``log_dir/gateway.log``. The other commands work from that pid file, the embedded-engine state
files (``run_dir/engine-<name>.json``) and the gateway's own ``/health`` endpoints.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from chatgate.settings import Settings, parse_engine_spec

PID_FILE_NAME = "chatgate.pid"
GATEWAY_LOG_NAME = "gateway.log"
ENGINE_LOG_GLOB = "engine-*.log"
ENGINE_STATE_GLOB = "engine-*.json"

EXIT_NOT_RUNNING = 3  # LSB init-script convention for "program is not running"
POLL_SECONDS = 0.25
PROGRESS_EVERY_SECONDS = 5.0
KILL_GRACE_SECONDS = 10.0
HTTP_TIMEOUT_SECONDS = 3.0
LOG_TAIL_ON_FAILURE = 40

# Start-up log lines worth echoing while we wait; the rest stays in the log file.
INTERESTING_LINE = re.compile(
    r"error|warn|exception|traceback|fail|engine|ready|migrat|listening|serving|running on|started",
    re.IGNORECASE,
)
# The first-run admin password line is never echoed (it would land in terminal scrollback and
# CI logs); start only says where to find it.
ADMIN_PASSWORD_LINE = re.compile(r"admin.*password|password.*admin", re.IGNORECASE)
NO_NVML_MESSAGE = "no GPU detected (NVML not available)"


def serve_command(args: list[str]) -> list[str]:
    """The foreground command that `start` runs detached. Tests replace this with a fake server."""
    return [sys.executable, "-m", "chatgate", "serve", *args]


# --------------------------------------------------------------------------- settings & paths


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        typer.echo(f"error: invalid chatgate configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def pid_file(settings: Settings) -> Path:
    return settings.run_dir / PID_FILE_NAME


def gateway_log(settings: Settings) -> Path:
    return settings.log_dir / GATEWAY_LOG_NAME


def base_url(host: str, port: int) -> str:
    """URL a local client uses to reach a server bound to host:port."""
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def build_serve_args(
    host: str | None, port: int | None, workers: int | None, engines: list[str], no_embedded: bool
) -> list[str]:
    args: list[str] = []
    if host is not None:
        args += ["--host", host]
    if port is not None:
        args += ["--port", str(port)]
    if workers is not None:
        args += ["--workers", str(workers)]
    for spec in engines:
        args += ["--engine", spec]
    if no_embedded:
        args.append("--no-embedded")
    return args


def target_address(settings: Settings, serve_args: list[str]) -> tuple[str, int]:
    """The host and port `serve` will bind: its --host/--port arguments, else the settings."""
    host, port = settings.host, settings.port
    for flag, value in zip(serve_args, serve_args[1:], strict=False):
        if flag == "--host":
            host = value
        elif flag == "--port":
            port = int(value)
    return host, port


# --------------------------------------------------------------------------- processes


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


# --------------------------------------------------------------------------- pid file


@dataclass
class PidRecord:
    pid: int
    host: str
    port: int
    started_at: str
    argv: list[str]
    serve_args: list[str] = field(default_factory=list)
    start_ticks: int | None = None

    @property
    def url(self) -> str:
        return base_url(self.host, self.port)

    def alive(self) -> bool:
        return pid_alive(self.pid, self.start_ticks)

    def started_epoch(self) -> float:
        return dt.datetime.fromisoformat(self.started_at).timestamp()


def read_pid_record(path: Path) -> PidRecord | None:
    try:
        data = json.loads(path.read_text())
        return PidRecord(**data)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        typer.echo(
            f"error: the pid file {path} is unreadable ({exc}); "
            "remove it once you are sure no chatgate is running",
            err=True,
        )
        raise typer.Exit(1) from exc


def write_pid_record(path: Path, record: PidRecord) -> None:
    # Write-then-rename so a concurrent reader never sees half a file.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
    tmp.replace(path)


def live_record(settings: Settings) -> PidRecord | None:
    """The recorded gateway if it still runs; a stale pid file is removed (and said so)."""
    path = pid_file(settings)
    record = read_pid_record(path)
    if record is None or record.alive():
        return record
    path.unlink(missing_ok=True)
    typer.echo(f"Removed stale pid file {path} (pid {record.pid} is no longer running).", err=True)
    return None


# --------------------------------------------------------------------------- HTTP


def _opener() -> urllib.request.OpenerDirector:
    # The gateway is reached directly: never through an HTTP(S)_PROXY from the environment.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch_json(url: str, timeout: float = HTTP_TIMEOUT_SECONDS) -> tuple[int, Any]:
    """GET url; (status, parsed JSON body). Error statuses are returned, not raised.

    Raises OSError (URLError, timeouts, refused connections) when nothing answers, and ValueError
    when the body is not JSON.
    """
    try:
        with _opener().open(url, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            body = exc.read()
        return exc.code, json.loads(body) if body else None


def health_ok(url: str) -> bool:
    """Whether GET url/health answers 200; "nothing answers yet" is normal while starting."""
    try:
        status, _ = fetch_json(f"{url}/health", timeout=2.0)
    except (OSError, ValueError):
        return False
    return status == 200


# --------------------------------------------------------------------------- logs


class LogFollower:
    """Reads lines appended to a file since a given offset; copes with truncation/rotation."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []
        if size < self.offset:  # truncated or replaced: start again from the top
            self.offset, self._partial = 0, b""
        if size == self.offset:
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        self.offset += len(chunk)
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        return [line.decode("utf-8", "replace").rstrip("\r") for line in complete]


def tail_lines(
    path: Path, count: int, end: int | None = None, block_size: int = 65536
) -> list[str]:
    """The last count lines of path before byte offset end (default: the end of the file).

    Reads backwards from the end so large logs stay cheap.
    """
    if count <= 0:
        return []
    with path.open("rb") as handle:
        position = handle.seek(0, os.SEEK_END) if end is None else end
        data = b""
        while position > 0 and data.count(b"\n") <= count:
            step = min(block_size, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return lines[-count:]


def engine_log_files(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob(ENGINE_LOG_GLOB))


def select_log_files(log_dir: Path, service: str) -> list[Path]:
    """Log files for SERVICE: gateway, engine (all engines), all, or one engine's name."""
    gateway = log_dir / GATEWAY_LOG_NAME
    if service == "gateway":
        candidates = [gateway]
    elif service == "engine":
        candidates = engine_log_files(log_dir)
    elif service == "all":
        candidates = [gateway, *engine_log_files(log_dir)]
    else:
        candidates = [log_dir / f"engine-{service}.log"]
    return [path for path in candidates if path.is_file()]


# --------------------------------------------------------------------------- start


def start_gateway(settings: Settings, serve_args: list[str], wait: bool, timeout: float) -> None:
    """Launch the gateway in the background; with wait, until /health answers."""
    record = live_record(settings)
    if record is not None:
        typer.echo(
            f"error: chatgate is already running (pid {record.pid}, {record.url}); "
            "use `chatgate stop` or `chatgate restart`",
            err=True,
        )
        raise typer.Exit(1)
    host, port = target_address(settings, serve_args)
    url = base_url(host, port)
    if health_ok(url):
        typer.echo(
            f"error: something already answers at {url} but is not recorded in "
            f"{pid_file(settings)}: is a foreground `chatgate serve` running?",
            err=True,
        )
        raise typer.Exit(1)
    record, log_offset = _launch(settings, serve_args, host, port)
    typer.echo(f"Started chatgate (pid {record.pid}); log: {gateway_log(settings)}")
    if not wait:
        typer.echo(f"Not waiting for start-up; check with `chatgate status`. URL: {url}")
        return
    _wait_until_healthy(settings, record, log_offset, timeout)
    typer.echo(f"chatgate is up at {url}")
    if _log_mentions_admin_password(gateway_log(settings), log_offset):
        typer.echo(
            f"The admin's first-run password is in {gateway_log(settings)} "
            "(the line mentioning the admin password); change it after logging in."
        )


def _launch(
    settings: Settings, serve_args: list[str], host: str, port: int
) -> tuple[PidRecord, int]:
    """Spawn the serve command and write the pid file; returns the record and the log offset."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    command = serve_command(serve_args)
    log_path = gateway_log(settings)
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"----- chatgate start {started_at}: {' '.join(command)}\n")
    log_offset = log_path.stat().st_size
    try:
        pid = spawn_detached(command, log_path)
    except OSError as exc:
        typer.echo(f"error: could not run {command[0]}: {exc}", err=True)
        raise typer.Exit(1) from exc
    record = PidRecord(
        pid=pid,
        host=host,
        port=port,
        started_at=started_at,
        argv=command,
        serve_args=serve_args,
        start_ticks=process_start_ticks(pid),
    )
    write_pid_record(pid_file(settings), record)
    return record, log_offset


def _wait_until_healthy(
    settings: Settings, record: PidRecord, log_offset: int, timeout: float
) -> None:
    log_path = gateway_log(settings)
    follower = LogFollower(log_path, log_offset)
    started = time.monotonic()
    next_progress = started + PROGRESS_EVERY_SECONDS
    typer.echo(f"Waiting for {record.url}/health (the first start loads the model) ...")
    while not health_ok(record.url):
        _echo_interesting(follower.new_lines())
        if not record.alive():
            pid_file(settings).unlink(missing_ok=True)
            # Whatever serve had started (an engine server) must not outlive it. The group id
            # cannot be handed to a new process while the group exists, so this is safe.
            signal_target(record.pid, signal.SIGTERM, group=True)
            _fail_start(log_path, log_offset, "chatgate exited during start-up.")
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            _fail_start(
                log_path,
                log_offset,
                f"chatgate did not answer {record.url}/health within {timeout:g}s. It is still "
                f"running (pid {record.pid}): watch `chatgate logs -f` or run `chatgate stop`.",
            )
        if time.monotonic() >= next_progress:
            typer.echo(f"  still starting ... {elapsed:.0f}s")
            next_progress += PROGRESS_EVERY_SECONDS
        time.sleep(POLL_SECONDS)
    _echo_interesting(follower.new_lines())


def _echo_interesting(lines: list[str]) -> None:
    for line in lines:
        if INTERESTING_LINE.search(line) and not ADMIN_PASSWORD_LINE.search(line):
            typer.echo(f"  | {line}")


def _fail_start(log_path: Path, log_offset: int, reason: str) -> None:
    lines = LogFollower(log_path, log_offset).new_lines()[-LOG_TAIL_ON_FAILURE:]
    typer.echo(f"error: {reason}", err=True)
    if lines:
        typer.echo(f"Last lines of {log_path}:", err=True)
        for line in lines:
            typer.echo(f"  | {line}", err=True)
    raise typer.Exit(1)


def _log_mentions_admin_password(log_path: Path, log_offset: int) -> bool:
    lines = LogFollower(log_path, log_offset).new_lines()
    return any(ADMIN_PASSWORD_LINE.search(line) for line in lines)


# --------------------------------------------------------------------------- stop


def stop_gateway(settings: Settings, timeout: float) -> None:
    """Stop the recorded gateway (if any), then any engine it left behind. Exits 1 on failure."""
    path = pid_file(settings)
    record = live_record(settings)
    if record is None:
        typer.echo("chatgate is not running.")
        return
    typer.echo(f"Stopping chatgate (pid {record.pid}) ...")
    if not terminate(record.pid, timeout, "chatgate"):
        typer.echo(f"error: chatgate (pid {record.pid}) survived SIGKILL; pid file kept", err=True)
        raise typer.Exit(1)
    path.unlink(missing_ok=True)
    _stop_leftover_engines(settings, record)
    typer.echo("chatgate stopped.")


def _stop_leftover_engines(settings: Settings, gateway: PidRecord) -> None:
    """Stop engine servers that outlived the gateway (it was killed before it could stop them).

    Only processes started after the gateway count: an old state file may name a pid that the
    system has since given to an unrelated process.
    """
    for state in read_engine_states(settings.run_dir):
        pid = state.get("pid")
        if not isinstance(pid, int) or not pid_alive(pid):
            continue
        started = process_started_epoch(pid)
        if started is None or started < gateway.started_epoch() - 1:
            continue
        name = state.get("name", "?")
        if terminate(pid, KILL_GRACE_SECONDS, f"engine {name}"):
            typer.echo(f"Stopped leftover engine {name} (pid {pid}).")
        else:
            typer.echo(f"warning: engine {name} (pid {pid}) is still running", err=True)


# --------------------------------------------------------------------------- status


def read_engine_states(run_dir: Path) -> list[dict[str, Any]]:
    states: list[dict[str, Any]] = []
    for path in sorted(run_dir.glob(ENGINE_STATE_GLOB)):
        name = path.stem.removeprefix("engine-")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            states.append({"name": name, "state": "unknown", "error": f"unreadable {path}: {exc}"})
            continue
        if not isinstance(data, dict):
            states.append({"name": name, "state": "unknown", "error": f"{path} is not an object"})
            continue
        states.append(data)
    return states


def engine_status(run_dir: Path) -> list[dict[str, Any]]:
    states = read_engine_states(run_dir)
    for state in states:
        pid = state.get("pid")
        state["process_alive"] = isinstance(pid, int) and pid_alive(pid)
    return states


def gateway_status(settings: Settings) -> dict[str, Any]:
    record = live_record(settings)
    if record is not None:
        info: dict[str, Any] = {
            "running": True,
            "managed": True,
            "pid": record.pid,
            "url": record.url,
            "started_at": record.started_at,
            "uptime_seconds": round(time.time() - record.started_epoch()),
        }
    else:
        url = base_url(settings.host, settings.port)
        # A foreground `chatgate serve` has no pid file but is still a running gateway.
        info = {"running": health_ok(url), "managed": False, "pid": None, "url": url}
    info.update(ready=False, checks={}, error=None)
    if info["running"]:
        info.update(_readiness(info["url"]))
    return info


def _readiness(url: str) -> dict[str, Any]:
    try:
        status, body = fetch_json(f"{url}/health/ready")
    except (OSError, ValueError) as exc:
        return {"ready": False, "error": f"GET {url}/health/ready failed: {exc}"}
    body = body if isinstance(body, dict) else {}
    checks = body.get("checks")
    return {
        "ready": status == 200 and body.get("status") == "ready",
        "ready_status_code": status,
        "checks": checks if isinstance(checks, dict) else {},
    }


def _check(checks: dict[str, Any], name: str) -> dict[str, Any]:
    value = checks.get(name)
    return dict(value) if isinstance(value, dict) else {}


def gpu_status() -> dict[str, Any]:
    """GPUs via NVML; any NVML problem becomes a "no GPU" answer instead of an error."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return {"available": False, "message": NO_NVML_MESSAGE, "devices": []}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return {"available": False, "message": f"no GPU detected (NVML: {exc})", "devices": []}
    try:
        devices = [_gpu_device(nvml, index) for index in range(int(nvml.nvmlDeviceGetCount()))]
    except nvml.NVMLError as exc:
        return {"available": False, "message": f"GPU query failed (NVML: {exc})", "devices": []}
    finally:
        nvml.nvmlShutdown()
    if not devices:
        return {"available": False, "message": "no GPU detected (NVML found none)", "devices": []}
    return {"available": True, "message": f"{len(devices)} GPU(s)", "devices": devices}


def _gpu_device(nvml: Any, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = nvml.nvmlDeviceGetName(handle)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    device: dict[str, Any] = {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_used_mib": int(memory.used) // 2**20,
        "memory_total_mib": int(memory.total) // 2**20,
        "utilization_percent": None,
        "temperature_c": None,
    }
    # Not every GPU reports these (e.g. MIG slices); leave them null rather than fail.
    try:
        device["utilization_percent"] = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except nvml.NVMLError:
        pass
    try:
        device["temperature_c"] = int(
            nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        )
    except nvml.NVMLError:
        pass
    return device


def collect_status(settings: Settings) -> dict[str, Any]:
    gateway = gateway_status(settings)
    checks: dict[str, Any] = gateway.pop("checks")
    masked = settings.masked()
    redis = None
    if settings.redis_url:
        redis = {"url": masked["redis_url"], **_check(checks, "redis")}
    return {
        "gateway": gateway,
        "engines": engine_status(settings.run_dir),
        "models": _check(checks, "engines"),
        "database": {"url": masked["database_url"], **_check(checks, "database")},
        "redis": redis,
        "gpus": gpu_status(),
    }


def status_exit_code(report: dict[str, Any]) -> int:
    gateway = report["gateway"]
    if not gateway["running"]:
        return EXIT_NOT_RUNNING
    return 0 if gateway["ready"] else 1


# --------------------------------------------------------------------------- status: text


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _ok(value: Any) -> str:
    if value is None:
        return "unknown"
    return "ok" if value else "FAIL"


def render_status(report: dict[str, Any]) -> Iterator[str]:
    yield from _render_gateway(report["gateway"])
    yield from _render_engines(report["engines"], report["models"])
    yield from _render_store("Database", report["database"])
    if report["redis"] is None:
        yield f"{'Redis':<10} not configured"
    else:
        yield from _render_store("Redis", report["redis"])
    yield from _render_gpus(report["gpus"])


def _render_gateway(gateway: dict[str, Any]) -> Iterator[str]:
    if not gateway["running"]:
        yield f"{'Gateway':<10} not running"
        return
    parts = [f"running at {gateway['url']}"]
    if gateway["managed"]:
        parts.append(f"pid {gateway['pid']}, up {format_duration(gateway['uptime_seconds'])}")
    else:
        parts.append("not started by `chatgate start` (no pid file)")
    parts.append("ready" if gateway["ready"] else "NOT READY")
    yield f"{'Gateway':<10} " + ", ".join(parts)
    if gateway["error"]:
        yield f"{'':<10} {gateway['error']}"


def _render_engines(engines: list[dict[str, Any]], models: dict[str, Any]) -> Iterator[str]:
    if not engines and not models:
        yield f"{'Engines':<10} none"
        return
    yield "Engines"
    for engine in engines:
        process = "alive" if engine.get("process_alive") else "not running"
        yield (
            f"  {engine.get('name', '?'):<20} {engine.get('state', 'unknown'):<11}"
            f" pid {engine.get('pid', '-')} ({process}), port {engine.get('port', '-')},"
            f" restarts {engine.get('restarts', 0)}"
        )
        if engine.get("last_error") or engine.get("error"):
            yield f"  {'':<20} last error: {engine.get('last_error') or engine.get('error')}"
    for model_id, model in models.items():
        yield f"  model {model_id}: {_ok(model.get('ok'))}"
        for endpoint in model.get("endpoints", []):
            health = "healthy" if endpoint.get("healthy") else f"down ({endpoint.get('error')})"
            yield f"    {endpoint.get('name')}: {endpoint.get('url')} {health}"


def _render_store(label: str, store: dict[str, Any]) -> Iterator[str]:
    line = f"{label:<10} {store['url']}"
    if "ok" in store:
        line += f"  {_ok(store['ok'])}"
        if store.get("latency_ms") is not None:
            line += f" ({float(store['latency_ms']):.1f} ms)"
    else:
        line += "  (not checked: gateway not running)"
    yield line
    if store.get("error"):
        yield f"{'':<10} {store['error']}"


def _render_gpus(gpus: dict[str, Any]) -> Iterator[str]:
    if not gpus["available"]:
        yield f"{'GPUs':<10} {gpus['message']}"
        return
    yield "GPUs"
    for gpu in gpus["devices"]:
        extras = [f"{gpu['memory_used_mib']}/{gpu['memory_total_mib']} MiB"]
        if gpu["utilization_percent"] is not None:
            extras.append(f"{gpu['utilization_percent']}% busy")
        if gpu["temperature_c"] is not None:
            extras.append(f"{gpu['temperature_c']} C")
        yield f"  [{gpu['index']}] {gpu['name']}: " + ", ".join(extras)


# --------------------------------------------------------------------------- logs command


def follow_logs(log_dir: Path, service: str, followers: dict[Path, LogFollower]) -> None:
    """Print lines appended to the selected logs until Ctrl-C; new engine logs are picked up."""
    labelled = service in ("engine", "all")
    try:
        while True:
            for path in select_log_files(log_dir, service):
                followers.setdefault(path, LogFollower(path))
            for path, follower in followers.items():
                for line in follower.new_lines():
                    typer.echo(f"[{path.stem}] {line}" if labelled else line)
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        return  # Ctrl-C is how the user ends --follow


def print_log_tails(followers: dict[Path, LogFollower], count: int) -> None:
    for index, (path, follower) in enumerate(followers.items()):
        if len(followers) > 1:
            typer.echo(("\n" if index else "") + f"==> {path} <==")
        for line in tail_lines(path, count, end=follower.offset):
            typer.echo(line)


# --------------------------------------------------------------------------- typer commands

HostOption = Annotated[str | None, typer.Option(help="Bind address (default: CHATGATE_HOST).")]
PortOption = Annotated[int | None, typer.Option(help="Port (default: CHATGATE_PORT).")]
WorkersOption = Annotated[int | None, typer.Option(help="Worker processes.")]
EngineOption = Annotated[
    list[str] | None,
    typer.Option("--engine", help="Attach an engine started elsewhere: NAME=URL (repeatable)."),
]
NoEmbeddedOption = Annotated[
    bool, typer.Option("--no-embedded", help="Do not start the embedded engine.")
]
WaitOption = Annotated[
    bool, typer.Option("--wait/--no-wait", help="Wait until the gateway answers /health.")
]
StartTimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for /health before giving up.")
]


def start(
    host: HostOption = None,
    port: PortOption = None,
    workers: WorkersOption = None,
    engine: EngineOption = None,
    no_embedded: NoEmbeddedOption = False,
    wait: WaitOption = True,
    timeout: StartTimeoutOption = 900.0,
) -> None:
    """Start the gateway in the background (pid file, log in the data dir's logs/)."""
    engines = engine or []
    for spec in engines:
        try:
            parse_engine_spec(spec)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--engine") from exc
    serve_args = build_serve_args(host, port, workers, engines, no_embedded)
    start_gateway(load_settings(), serve_args, wait, timeout)


def stop(
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL.")
    ] = 30.0,
) -> None:
    """Stop the background gateway (SIGTERM, then SIGKILL after --timeout)."""
    stop_gateway(load_settings(), timeout)


def restart(
    stop_timeout: Annotated[
        float, typer.Option(help="Seconds to wait after SIGTERM before SIGKILL.")
    ] = 30.0,
    wait: WaitOption = True,
    timeout: StartTimeoutOption = 900.0,
) -> None:
    """Stop the gateway and start it again with the arguments it was started with."""
    settings = load_settings()
    record = read_pid_record(pid_file(settings))
    serve_args = record.serve_args if record else []
    if record is None:
        typer.echo("No recorded start arguments; starting with defaults.")
    stop_gateway(settings, stop_timeout)
    start_gateway(settings, serve_args, wait, timeout)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show gateway, engines, database, Redis and GPUs.

    Exit code 0: running and ready; 1: running but not ready; 3: not running.
    """
    report = collect_status(load_settings())
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        for line in render_status(report):
            typer.echo(line)
    raise typer.Exit(status_exit_code(report))


def logs(
    service: Annotated[
        str, typer.Argument(help="gateway, engine (all engines), all, or an engine's name.")
    ] = "all",
    lines: Annotated[int, typer.Option("-n", "--lines", help="Lines to show per file.")] = 100,
    follow: Annotated[
        bool, typer.Option("-f", "--follow", help="Keep printing new lines.")
    ] = False,
) -> None:
    """Print the last lines of the gateway and/or engine logs."""
    log_dir = load_settings().log_dir
    paths = select_log_files(log_dir, service)
    if not paths and not (follow and service in ("engine", "all")):
        typer.echo(f"error: no {service} log in {log_dir} (has chatgate been started?)", err=True)
        raise typer.Exit(1)
    # Fix each file's offset first: the tail ends there and --follow goes on from there, so a
    # line written in between is printed exactly once.
    followers = {path: LogFollower(path, path.stat().st_size) for path in paths}
    print_log_tails(followers, lines)
    if follow:
        follow_logs(log_dir, service, followers)


def register(app: typer.Typer) -> None:
    """Add start, stop, restart, status and logs to the chatgate CLI."""
    app.command()(start)
    app.command()(stop)
    app.command()(restart)
    app.command()(status)
    app.command()(logs)

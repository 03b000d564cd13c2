"""`chatgate start/stop/restart/status/logs` against a fake gateway (a stdlib HTTP server).

`service.serve_command` is replaced so `start` launches FAKE_GATEWAY instead of `chatgate serve`;
everything else (detaching, pid file, health polling, signals, state files) is the real code.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from chatgate.cli import lifecycle, log_files, pidfile, probe, process, service, status_report
from chatgate.hardware.gpus import gpu_status

pytestmark = pytest.mark.timeout(90)

FAKE_GATEWAY = """
import json, os, signal, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
# Like `chatgate serve`: --port, else the CHATGATE_PORT setting.
port = int(args[args.index("--port") + 1] if "--port" in args else os.environ["CHATGATE_PORT"])
mode = os.environ.get("FAKE_MODE", "ok")
print("fake gateway: running migrations", flush=True)
print("just noise that start should not echo", flush=True)
print("First run: created user admin with password hunter2-secret", flush=True)
if mode == "crash":
    print("fatal error: cannot open the database", flush=True)
    sys.exit(4)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("FAKE_CHILD"):
    # A helper in our process group: stop must take it down too.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(os.path.join(os.environ["CHATGATE_DATA_DIR"], "child.pid"), "w") as f:
        f.write(str(child.pid))
time.sleep(float(os.environ.get("FAKE_DELAY", "0")))
READY = {
    "status": "ready",
    "checks": {
        "database": {"ok": True, "latency_ms": 1.5, "error": None},
        "engines": {"smollm2-135m": {"ok": True, "endpoints": [
            {"name": "local", "url": "http://127.0.0.1:9/v1", "healthy": True, "error": None}
        ]}},
    },
}


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            code, body = 200, {"status": "healthy", "service": "chatgate", "version": "0.0"}
        elif self.path == "/health/ready" and mode == "not-ready":
            code, body = 503, dict(READY, status="not_ready")
        elif self.path == "/health/ready":
            code, body = 200, READY
        else:
            code, body = 404, {"error": "not found"}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


print(f"fake gateway listening on port {port}", flush=True)
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""

# Runs the service commands in a separate process (for --follow, which only Ctrl-C ends).
CLI_SCRIPT = (
    "import typer\n"
    "from chatgate.cli.service import register\n"
    "app = typer.Typer()\n"
    "register(app)\n"
    "app()\n"
)

Invoke = Callable[..., Result]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    process.reap_if_child(pid)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An isolated data dir and port, the fake gateway as `serve`, and cleanup of what ran."""
    data = tmp_path / "data"
    script = tmp_path / "fake_gateway.py"
    script.write_text(FAKE_GATEWAY)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout
    for name in list(os.environ):
        if name.startswith("CHATGATE_") or name.startswith("FAKE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHATGATE_DATA_DIR", str(data))
    monkeypatch.setenv("CHATGATE_PORT", str(free_port()))
    monkeypatch.setattr(service, "serve_command", lambda args: [sys.executable, str(script), *args])
    monkeypatch.setattr(lifecycle, "PROGRESS_EVERY_SECONDS", 0.5)
    try:
        yield data
    finally:
        _cleanup(data)


def _cleanup(data: Path) -> None:
    pid_path = data / "run" / pidfile.PID_FILE_NAME
    if pid_path.exists():
        kill_group(json.loads(pid_path.read_text())["pid"])
    child = data / "child.pid"
    if child.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child.read_text()), signal.SIGKILL)


@pytest.fixture
def invoke() -> Invoke:
    app = typer.Typer()
    service.register(app)
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args))

    return run


def read_pid_file(data: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((data / "run" / pidfile.PID_FILE_NAME).read_text())
    return result


def gateway_url() -> str:
    return f"http://127.0.0.1:{os.environ['CHATGATE_PORT']}"


def write_stale_pid_file(run: Path) -> int:
    """A pid file naming a process that has exited; returns that pid."""
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait(timeout=10)
    run.mkdir(parents=True, exist_ok=True)
    record = {"pid": proc.pid, "host": "127.0.0.1", "port": 1, "started_at": "x", "argv": []}
    (run / pidfile.PID_FILE_NAME).write_text(json.dumps(record))
    return proc.pid


def write_engine_state(data: Path, name: str, **fields: Any) -> None:
    run = data / "run"
    run.mkdir(parents=True, exist_ok=True)
    state = {
        "name": name,
        "pid": os.getpid(),
        "port": 8081,
        "base_url": "http://127.0.0.1:8081/v1",
        "state": "ready",
        "restarts": 0,
        "last_error": None,
        "updated_at": "2025-01-01T00:00:00+00:00",
        "started_at": "2025-01-01T00:00:00+00:00",
        "log_file": str(data / "logs" / f"engine-{name}.log"),
        **fields,
    }
    (run / f"engine-{name}.json").write_text(json.dumps(state))


# --------------------------------------------------------------------------- start


def test_start_writes_pid_file_and_waits_for_health(data_dir: Path, invoke: Invoke) -> None:
    result = invoke("start", "--timeout", "30")

    assert result.exit_code == 0, result.output
    record = read_pid_file(data_dir)
    assert set(record) >= {"pid", "host", "port", "started_at", "argv"}
    assert record["port"] == int(os.environ["CHATGATE_PORT"])
    assert process.pid_alive(record["pid"])
    assert probe.health_ok(gateway_url())
    assert f"chatgate is up at {gateway_url()}" in result.output
    assert "| fake gateway: running migrations" in result.output
    assert "noise" not in result.output
    # The password itself stays in the log; start only points at it.
    assert "hunter2" not in result.output
    assert "first-run password is in" in result.output
    assert "hunter2-secret" in (data_dir / "logs" / "gateway.log").read_text()


def test_start_passes_serve_arguments(data_dir: Path, invoke: Invoke) -> None:
    port = free_port()
    result = invoke(
        "start", "--port", str(port), "--workers", "2", "--engine", "x=http://h:1", "--no-embedded"
    )

    assert result.exit_code == 0, result.output
    record = read_pid_file(data_dir)
    assert record["port"] == port
    assert record["serve_args"] == [
        "--port", str(port), "--workers", "2", "--engine", "x=http://h:1", "--no-embedded"
    ]  # fmt: skip


def test_start_rejects_a_bad_engine_spec(data_dir: Path, invoke: Invoke) -> None:
    result = invoke("start", "--engine", "no-url-here")

    assert result.exit_code == 2
    assert not (data_dir / "run" / pidfile.PID_FILE_NAME).exists()


def test_second_start_refuses(data_dir: Path, invoke: Invoke) -> None:
    assert invoke("start").exit_code == 0
    first = read_pid_file(data_dir)

    result = invoke("start")

    assert result.exit_code == 1
    assert f"already running (pid {first['pid']}" in result.output
    assert read_pid_file(data_dir)["pid"] == first["pid"]


def test_start_fails_with_log_tail_when_the_process_dies(
    data_dir: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "crash")

    result = invoke("start", "--timeout", "30")

    assert result.exit_code == 1
    assert "exited during start-up" in result.output
    assert "fatal error: cannot open the database" in result.output
    assert not (data_dir / "run" / pidfile.PID_FILE_NAME).exists()


def test_start_times_out_and_leaves_the_process_running(
    data_dir: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_DELAY", "60")

    result = invoke("start", "--timeout", "1.5")

    assert result.exit_code == 1
    assert "did not answer" in result.output
    assert "still starting" in result.output
    assert process.pid_alive(read_pid_file(data_dir)["pid"])


def test_start_no_wait_returns_at_once(data_dir: Path, invoke: Invoke) -> None:
    result = invoke("start", "--no-wait")

    assert result.exit_code == 0, result.output
    assert "Not waiting" in result.output
    assert process.pid_alive(read_pid_file(data_dir)["pid"])


# --------------------------------------------------------------------------- stop / restart


def test_stop_kills_the_process_group_and_removes_the_pid_file(
    data_dir: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_CHILD", "1")
    assert invoke("start").exit_code == 0
    gateway_pid = read_pid_file(data_dir)["pid"]
    child_pid = int((data_dir / "child.pid").read_text())
    assert process.pid_alive(child_pid)

    result = invoke("stop", "--timeout", "10")

    assert result.exit_code == 0, result.output
    assert "chatgate stopped" in result.output
    assert not (data_dir / "run" / pidfile.PID_FILE_NAME).exists()
    assert not process.pid_alive(gateway_pid)
    assert not process.pid_alive(child_pid)


def test_stop_sends_sigkill_after_the_timeout(
    data_dir: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "ignore-term")
    assert invoke("start").exit_code == 0
    gateway_pid = read_pid_file(data_dir)["pid"]

    result = invoke("stop", "--timeout", "1")

    assert result.exit_code == 0, result.output
    assert "sending SIGKILL" in result.output
    assert not process.pid_alive(gateway_pid)
    assert not (data_dir / "run" / pidfile.PID_FILE_NAME).exists()


ENGINE_RECORDING_SIGTERM = """
import pathlib, signal, sys, time
def on_term(*_):
    pathlib.Path(sys.argv[1]).write_text("SIGTERM")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
pathlib.Path(sys.argv[2]).write_text("ready")
time.sleep(300)
"""


def test_stop_also_stops_an_engine_the_gateway_left_behind(
    data_dir: Path, invoke: Invoke, tmp_path: Path
) -> None:
    assert invoke("start").exit_code == 0
    got_signal, ready = tmp_path / "signal", tmp_path / "ready"
    # An engine runs in its own session (as the supervisor starts it), so the gateway's group
    # signal does not reach it. The engine itself records the signal: the in-process CLI may
    # reap it before Popen.wait() could see its exit status.
    with subprocess.Popen(
        [sys.executable, "-c", ENGINE_RECORDING_SIGTERM, str(got_signal), str(ready)],
        start_new_session=True,
    ) as engine:
        try:
            deadline = time.monotonic() + 10
            while not ready.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            write_engine_state(data_dir, "orphan", pid=engine.pid)
            result = invoke("stop", "--timeout", "10")
            assert result.exit_code == 0, result.output
            assert f"Stopped leftover engine orphan (pid {engine.pid})" in result.output
            assert got_signal.read_text() == "SIGTERM"
        finally:
            engine.kill()


def test_stop_when_not_running(data_dir: Path, invoke: Invoke) -> None:
    result = invoke("stop")

    assert result.exit_code == 0
    assert "chatgate is not running" in result.output


def test_stale_pid_file_is_cleaned_up(data_dir: Path, invoke: Invoke) -> None:
    run = data_dir / "run"
    pid = write_stale_pid_file(run)

    result = invoke("stop")

    assert result.exit_code == 0
    assert "Removed stale pid file" in result.output and f"pid {pid}" in result.output
    assert "chatgate is not running" in result.output
    assert not (run / pidfile.PID_FILE_NAME).exists()


def test_unreadable_pid_file_is_an_error(data_dir: Path, invoke: Invoke) -> None:
    run = data_dir / "run"
    run.mkdir(parents=True)
    (run / pidfile.PID_FILE_NAME).write_text("{not json")

    result = invoke("start")

    assert result.exit_code == 1
    assert "unreadable" in result.output
    assert not any((data_dir / "logs").glob("*")), "nothing may be started"
    (run / pidfile.PID_FILE_NAME).unlink()


def test_restart_reuses_the_recorded_arguments(data_dir: Path, invoke: Invoke) -> None:
    port = free_port()
    assert invoke("start", "--port", str(port)).exit_code == 0
    first = read_pid_file(data_dir)

    result = invoke("restart", "--stop-timeout", "10")

    assert result.exit_code == 0, result.output
    second = read_pid_file(data_dir)
    assert second["pid"] != first["pid"]
    assert second["serve_args"] == ["--port", str(port)]
    assert not process.pid_alive(first["pid"])
    assert probe.health_ok(f"http://127.0.0.1:{port}")


# --------------------------------------------------------------------------- status


def test_status_json_running_ready_with_engine_state(
    data_dir: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHATGATE_DATABASE_URL", "postgresql+asyncpg://app:s3cret@db:5432/chat")
    assert invoke("start").exit_code == 0
    write_engine_state(data_dir, "smollm2-135m", state="ready", restarts=2)

    result = invoke("status", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["gateway"]["running"] is True
    assert report["gateway"]["ready"] is True
    assert report["gateway"]["pid"] == read_pid_file(data_dir)["pid"]
    assert report["gateway"]["uptime_seconds"] >= 0
    [engine] = report["engines"]
    assert (engine["name"], engine["state"], engine["restarts"]) == ("smollm2-135m", "ready", 2)
    assert engine["process_alive"] is True
    assert report["models"]["smollm2-135m"]["ok"] is True
    assert report["database"] == {
        "url": "postgresql+asyncpg://app:****@db:5432/chat",
        "ok": True,
        "latency_ms": 1.5,
        "error": None,
    }
    assert "s3cret" not in result.stdout
    assert report["redis"] is None


def test_status_table_when_running(data_dir: Path, invoke: Invoke) -> None:
    assert invoke("start").exit_code == 0
    write_engine_state(data_dir, "smollm2-135m", state="restarting", last_error="exit 1")

    result = invoke("status")

    assert result.exit_code == 0, result.output
    assert f"running at {gateway_url()}" in result.output
    assert "ready" in result.output
    assert "smollm2-135m" in result.output and "restarting" in result.output
    assert "last error: exit 1" in result.output
    assert "Redis      not configured" in result.output


def test_status_running_but_not_ready_exits_1(
    data_dir: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "not-ready")
    assert invoke("start").exit_code == 0

    result = invoke("status", "--json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["gateway"]["running"] is True
    assert report["gateway"]["ready"] is False
    assert report["gateway"]["ready_status_code"] == 503


def test_status_not_running_exits_3_and_cleans_a_stale_pid_file(
    data_dir: Path, invoke: Invoke
) -> None:
    run = data_dir / "run"
    write_stale_pid_file(run)

    result = invoke("status")

    assert result.exit_code == status_report.EXIT_NOT_RUNNING == 3
    assert "Gateway    not running" in result.output
    assert "not checked" in result.output
    assert not (run / pidfile.PID_FILE_NAME).exists()


def test_status_sees_a_foreground_gateway_without_pid_file(
    data_dir: Path, invoke: Invoke, tmp_path: Path
) -> None:
    port = os.environ["CHATGATE_PORT"]
    with subprocess.Popen(
        [sys.executable, str(tmp_path / "fake_gateway.py"), "--port", port],
        stdout=subprocess.DEVNULL,
    ) as gateway:
        try:
            deadline = time.monotonic() + 20
            while not probe.health_ok(gateway_url()) and time.monotonic() < deadline:
                time.sleep(0.1)
            result = invoke("status", "--json")
            assert result.exit_code == 0, result.output
            report = json.loads(result.stdout)
            assert report["gateway"]["running"] is True
            assert report["gateway"]["managed"] is False
            # start must not launch a second gateway on the same port.
            refused = invoke("start")
            assert refused.exit_code == 1
            assert "not recorded" in refused.output
        finally:
            gateway.kill()


def test_status_without_gpu_library_prints_the_no_gpu_line(
    data_dir: Path, invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail

    result = invoke("status")

    assert result.exit_code == 3
    assert "GPUs       no GPU detected (NVML not available)" in result.output


def fake_nvml(init_error: str | None = None) -> types.ModuleType:
    module = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    def init() -> None:
        if init_error:
            raise NVMLError(init_error)

    def utilization(handle: str) -> Any:
        raise NVMLError("Not Supported")

    module.__dict__.update(
        NVMLError=NVMLError,
        NVML_TEMPERATURE_GPU=0,
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda index: f"gpu{index}",
        nvmlDeviceGetName=lambda handle: b"Fake H100",
        nvmlDeviceGetMemoryInfo=lambda handle: types.SimpleNamespace(
            used=2 * 2**30, total=80 * 2**30
        ),
        nvmlDeviceGetUtilizationRates=utilization,
        nvmlDeviceGetTemperature=lambda handle, sensor: 41,
    )
    return module


def test_gpu_status_reads_nvml_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml())

    gpus = gpu_status()

    assert gpus["available"] is True
    assert gpus["devices"] == [
        {
            "index": 0,
            "name": "Fake H100",
            "memory_used_mib": 2048,
            "memory_total_mib": 81920,
            "memory_used_bytes": 2 * 2**30,
            "memory_total_bytes": 80 * 2**30,
            "utilization_percent": None,
            "temperature_c": 41,
            "power_w": None,
            "power_limit_w": None,
        }
    ]
    assert list(status_report._render_gpus(gpus)) == [
        "GPUs",
        "  [0] Fake H100: 2048/81920 MiB, 41 C",
    ]


def test_gpu_status_without_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(init_error="Driver Not Loaded"))

    gpus = gpu_status()

    assert gpus == {
        "available": False,
        "message": "no GPU detected (NVML: Driver Not Loaded)",
        "devices": [],
    }


# --------------------------------------------------------------------------- logs


def write_log(path: Path, prefix: str, count: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{prefix} line {i}\n" for i in range(1, count + 1)))


def test_logs_prints_the_last_n_lines(data_dir: Path, invoke: Invoke) -> None:
    write_log(data_dir / "logs" / "gateway.log", "gw", 200)

    result = invoke("logs", "gateway", "-n", "3")

    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["gw line 198", "gw line 199", "gw line 200"]


def test_logs_all_shows_each_file_under_a_header(data_dir: Path, invoke: Invoke) -> None:
    logs = data_dir / "logs"
    write_log(logs / "gateway.log", "gw", 5)
    write_log(logs / "engine-a.log", "a", 5)
    write_log(logs / "engine-b.log", "b", 5)

    everything = invoke("logs", "-n", "1")
    engines = invoke("logs", "engine", "-n", "2")
    one_engine = invoke("logs", "b", "-n", "1")

    assert everything.exit_code == 0, everything.output
    assert everything.output.splitlines() == [
        f"==> {logs / 'gateway.log'} <==", "gw line 5", "",
        f"==> {logs / 'engine-a.log'} <==", "a line 5", "",
        f"==> {logs / 'engine-b.log'} <==", "b line 5",
    ]  # fmt: skip
    assert "gw line" not in engines.output
    assert "a line 4" in engines.output and "b line 5" in engines.output
    assert one_engine.output.splitlines() == ["b line 5"]


def test_logs_without_log_files_is_an_error(data_dir: Path, invoke: Invoke) -> None:
    result = invoke("logs", "gateway")

    assert result.exit_code == 1
    assert "no gateway log" in result.output


def read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk
    return seen


def test_logs_follow_prints_new_lines_until_ctrl_c(data_dir: Path) -> None:
    logs = data_dir / "logs"
    write_log(logs / "gateway.log", "gw", 3)
    command = [sys.executable, "-c", CLI_SCRIPT, "logs", "all", "-n", "1", "-f"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        try:
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            assert b"gw line 3" in read_until(fd, b"gw line 3", 20)
            with (logs / "gateway.log").open("a") as log:
                log.write("appended to the gateway\n")
            write_log(logs / "engine-late.log", "late", 1)  # an engine that starts later
            seen = read_until(fd, b"appended to the gateway", 10)
            seen += read_until(fd, b"late line 1", 10)
            assert b"[gateway] appended to the gateway" in seen
            assert b"[engine-late] late line 1" in seen
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()


def test_tail_lines_crosses_read_blocks(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    write_log(path, "x", 50)

    assert log_files.tail_lines(path, 4, block_size=7) == [f"x line {i}" for i in range(47, 51)]
    assert log_files.tail_lines(path, 100, block_size=7)[0] == "x line 1"
    assert log_files.tail_lines(path, 0) == []
    assert log_files.tail_lines(path, 1, end=len("x line 1\nx line 2\n")) == ["x line 2"]


def test_log_follower_returns_only_complete_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_text("old\n")
    follower = log_files.LogFollower(path, path.stat().st_size)
    with path.open("a") as log:
        log.write("new one\npartial")
    assert follower.new_lines() == ["new one"]
    with path.open("a") as log:
        log.write(" done\n")
    assert follower.new_lines() == ["partial done"]
    path.write_text("rotated\n")  # truncated: read from the top again
    assert follower.new_lines() == ["rotated"]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:8080"),
        ("[::1]", "http://[::1]:8080"),
        ("chat.example", "http://chat.example:8080"),
    ],
)
def test_base_url(host: str, url: str) -> None:
    assert probe.base_url(host, 8080) == url


def test_format_duration() -> None:
    assert status_report.format_duration(5) == "5s"
    assert status_report.format_duration(65) == "1m 5s"
    assert status_report.format_duration(3 * 3600 + 120) == "3h 2m"
    assert status_report.format_duration(2 * 86400 + 3600) == "2d 1h 0m"

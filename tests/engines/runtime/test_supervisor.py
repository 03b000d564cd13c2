"""EngineSupervisor against a tiny fake engine (tests/engines/fake_engine.py)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatgate.engines.runtime.liveness import Backoff, EngineProbe, Liveness
from chatgate.engines.runtime.supervisor import EngineSupervisor

FAKE_ENGINE = Path(__file__).parent.parent / "fake_engine.py"
SRC_DIR = Path(__file__).resolve().parents[3] / "src"
STATE_KEYS = {
    "name", "pid", "port", "base_url", "state", "restarts",
    "last_error", "updated_at", "started_at", "log_file", "wedged_restarts",
}  # fmt: skip

Supervise = Callable[..., EngineSupervisor]


def fake_command(*options: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [sys.executable, str(FAKE_ENGINE), "--port", str(port), *options]

    return command


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Supervise]:
    """Builds supervisors for the fake engine and always stops them afterwards."""
    created: list[EngineSupervisor] = []

    def build(*options: str, **kwargs: Any) -> EngineSupervisor:
        kwargs.setdefault("run_dir", tmp_path / "run")
        kwargs.setdefault("log_dir", tmp_path / "logs")
        kwargs.setdefault("backoff_initial", 0.05)
        kwargs.setdefault("backoff_max", 0.2)
        supervisor = EngineSupervisor("fake", fake_command(*options), **kwargs)
        created.append(supervisor)
        return supervisor

    try:
        yield build
    finally:
        for supervisor in created:
            supervisor.stop(timeout=2.0)


def read_state(supervisor: EngineSupervisor) -> dict[str, Any]:
    assert supervisor.state_file is not None
    state: dict[str, Any] = json.loads(supervisor.state_file.read_text())
    return state


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def pid_alive(pid: int) -> bool:
    """True for a running process; a zombie (dead, not yet reaped by init) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def get_status_code(url: str) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=2) as response:
        status: int = response.status
        return status


def test_start_becomes_ready_and_writes_state_file(supervise: Supervise) -> None:
    supervisor = supervise()
    supervisor.start()

    assert supervisor.wait_ready(10)
    status = supervisor.status()
    assert status.state == "ready"
    assert status.pid is not None and pid_alive(status.pid)
    assert status.base_url == supervisor.base_url == f"http://127.0.0.1:{status.port}/v1"
    assert status.restarts == 0 and status.last_error is None
    assert get_status_code(f"{status.base_url}/models") == 200

    state = read_state(supervisor)
    assert set(state) == STATE_KEYS
    assert state["name"] == "fake"
    assert (state["state"], state["pid"], state["port"]) == ("ready", status.pid, status.port)
    assert state["base_url"] == status.base_url
    assert state["started_at"] == status.started_at
    assert state["updated_at"] >= state["started_at"]
    assert state["log_file"] == str(supervisor.log_file)
    assert supervisor.log_file is not None
    assert "fake engine listening" in supervisor.log_file.read_text()


def test_killed_engine_is_restarted_with_new_pid_on_same_port(supervise: Supervise) -> None:
    supervisor = supervise()
    supervisor.start()
    assert supervisor.wait_ready(10)
    old = read_state(supervisor)

    os.kill(old["pid"], signal.SIGKILL)

    def restarted() -> bool:
        state = read_state(supervisor)
        return state["state"] == "ready" and state["pid"] not in (None, old["pid"])

    assert wait_for(restarted, 10), read_state(supervisor)
    status = supervisor.status()
    assert status.restarts == 1
    assert status.port == old["port"]
    assert status.last_error is not None and "SIGKILL" in status.last_error
    assert read_state(supervisor)["restarts"] == 1
    assert get_status_code(f"{supervisor.base_url}/models") == 200


def test_stop_kills_process_group_and_records_stopped(supervise: Supervise, tmp_path: Path) -> None:
    helper_pid_file = tmp_path / "helper.pid"
    supervisor = supervise("--helper-pid-file", str(helper_pid_file))
    supervisor.start()
    assert supervisor.wait_ready(10)
    engine_pid = supervisor.status().pid
    assert engine_pid is not None
    helper_pid = int(helper_pid_file.read_text())
    assert pid_alive(helper_pid)

    supervisor.stop(timeout=5.0)

    assert wait_for(lambda: not pid_alive(engine_pid) and not pid_alive(helper_pid), 5)
    state = read_state(supervisor)
    assert (state["state"], state["pid"]) == ("stopped", None)
    assert supervisor.status().state == "stopped"
    supervisor.stop()  # idempotent
    assert read_state(supervisor)["state"] == "stopped"


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(supervise: Supervise) -> None:
    supervisor = supervise("--ignore-sigterm")
    supervisor.start()
    assert supervisor.wait_ready(10)
    engine_pid = supervisor.status().pid
    assert engine_pid is not None

    started = time.monotonic()
    supervisor.stop(timeout=0.5)

    assert time.monotonic() - started < 4
    assert not pid_alive(engine_pid)
    assert supervisor.status().state == "stopped"


def test_engine_that_exits_at_once_ends_failed_after_bounded_retries(
    supervise: Supervise,
) -> None:
    supervisor = supervise("--exit-code", "3", backoff_initial=0.01, backoff_max=0.02)
    supervisor.start()

    assert not supervisor.wait_ready(15)
    status = supervisor.status()
    assert status.state == "failed"
    assert status.restarts == 2  # a crash loop: three exits within the window
    assert status.pid is None
    assert status.last_error is not None
    assert "crashed 3 times within 300 s" in status.last_error
    assert "exited with code 3" in status.last_error
    assert "failing on purpose" in status.last_error  # the log's last lines
    state = read_state(supervisor)
    assert (state["state"], state["pid"], state["restarts"]) == ("failed", None, 2)


def test_quick_failures_end_failed_when_crashes_are_spread_out(supervise: Supervise) -> None:
    loose = Liveness(crash_limit=100)
    supervisor = supervise("--exit-code", "3", backoff_initial=0.01, backoff_max=0.02,
                           liveness=loose)  # fmt: skip
    supervisor.start()

    assert not supervisor.wait_ready(15)
    status = supervisor.status()
    assert status.state == "failed" and status.restarts == 9  # ten starts in all
    assert status.last_error is not None and "gave up after 10 failed starts" in status.last_error


def probing(**overrides: Any) -> Liveness:
    """Readiness by a 1-token generation, with test-sized times."""
    values: dict[str, Any] = {"probe": EngineProbe("fake"), "ready_probe_timeout": 2.0}
    return Liveness(**{**values, **overrides})


def test_ready_only_after_a_generated_token(supervise: Supervise) -> None:
    supervisor = supervise(liveness=probing())
    supervisor.start()
    assert supervisor.wait_ready(10)


def test_engine_that_cannot_generate_is_never_ready(supervise: Supervise) -> None:
    supervisor = supervise("--hang-completions", ready_timeout=1.0, max_quick_failures=1,
                           liveness=probing(ready_probe_timeout=0.3))  # fmt: skip
    supervisor.start()

    assert not supervisor.wait_ready(10)
    status = supervisor.status()
    assert status.state == "failed"
    assert status.last_error is not None and "not ready within 1s" in status.last_error


def test_segfault_on_first_generation_is_a_diagnosed_crash_loop(supervise: Supervise) -> None:
    hints: list[int] = []

    def hint(returncode: int) -> str:
        hints.append(returncode)
        return "Check the CPU."

    supervisor = supervise("--segfault-on-completion", backoff_initial=0.01, backoff_max=0.02,
                           liveness=probing(crash_limit=3, hint=hint))  # fmt: skip
    seen: list[str] = []
    supervisor.add_listener(lambda status: seen.append(status.state))
    supervisor.start()

    assert not supervisor.wait_ready(20)
    status = supervisor.status()
    assert status.state == "failed"
    assert status.restarts == 2
    error = status.last_error or ""
    assert error.startswith("The engine fake crashed 3 times within 300 s")
    assert "killed by signal SIGSEGV" in error and "Check the CPU." in error
    assert "crashing in its first generation" in error  # the log's last lines
    assert hints == [-signal.SIGSEGV]
    assert seen[-1] == "failed" and "ready" not in seen


def test_wedged_engine_is_restarted(supervise: Supervise) -> None:
    liveness = probing(probe_interval=0.1, wedged_seconds=0.8, crash_limit=100)
    supervisor = supervise("--hang-after", "1", liveness=liveness)
    supervisor.start()
    assert supervisor.wait_ready(10)
    first_pid = supervisor.status().pid

    def restarted() -> bool:
        status = supervisor.status()
        return status.wedged_restarts >= 1 and status.pid not in (None, first_pid)

    assert wait_for(restarted, 15), supervisor.status()
    status = supervisor.status()
    assert status.last_error is not None and "no token for" in status.last_error
    assert read_state(supervisor)["wedged_restarts"] >= 1


def test_engine_never_ready_is_restarted_then_failed(supervise: Supervise) -> None:
    supervisor = supervise("--delay", "30", ready_timeout=0.3, max_quick_failures=2)
    supervisor.start()

    assert not supervisor.wait_ready(10)
    status = supervisor.status()
    assert status.state == "failed"
    assert status.restarts == 1
    assert status.last_error is not None and "not ready within 0.3s" in status.last_error


def test_missing_program_fails_at_once_without_retrying(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-engine")
    supervisor = EngineSupervisor("ghost", lambda port: [missing], run_dir=tmp_path)
    supervisor.start()
    try:
        assert not supervisor.wait_ready(5)
        status = supervisor.status()
        assert (status.state, status.restarts) == ("failed", 0)
        assert status.last_error is not None and "could not start engine" in status.last_error
    finally:
        supervisor.stop()


def test_busy_port_is_reported_instead_of_probing_someone_else(supervise: Supervise) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        supervisor = supervise(port=port, max_quick_failures=2, backoff_initial=0.01)
        supervisor.start()

        assert not supervisor.wait_ready(5)
        status = supervisor.status()
    assert status.state == "failed"
    assert status.last_error is not None and "already in use" in status.last_error


def test_wait_ready_times_out_while_engine_is_starting(supervise: Supervise) -> None:
    supervisor = supervise("--delay", "10")
    supervisor.start()

    started = time.monotonic()
    assert not supervisor.wait_ready(0.3)
    assert time.monotonic() - started < 2
    assert supervisor.status().state == "starting"


def test_wait_ready_reports_progress(supervise: Supervise) -> None:
    supervisor = supervise("--delay", "0.8")
    supervisor.start()
    messages: list[str] = []

    assert supervisor.wait_ready(10, messages.append, progress_every=0.2)
    assert messages
    assert messages[0].startswith(f"waiting for engine fake on 127.0.0.1:{supervisor.port} (")


def test_runs_without_run_dir_or_log_dir(supervise: Supervise) -> None:
    supervisor = supervise(run_dir=None, log_dir=None)
    supervisor.start()

    assert supervisor.wait_ready(10)
    assert supervisor.state_file is None and supervisor.log_file is None


def test_start_twice_is_refused(supervise: Supervise) -> None:
    supervisor = supervise()
    supervisor.start()
    with pytest.raises(RuntimeError, match="already started"):
        supervisor.start()


def test_stop_before_start_is_a_no_op(tmp_path: Path) -> None:
    supervisor = EngineSupervisor("idle", fake_command(), run_dir=tmp_path)
    supervisor.stop()
    assert supervisor.status().state == "stopped"
    assert not (tmp_path / "engine-idle.json").exists()


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden"])
def test_engine_name_must_be_safe_in_file_names(name: str) -> None:
    with pytest.raises(ValueError, match="engine name"):
        EngineSupervisor(name, fake_command())


def test_backoff_doubles_up_to_maximum_and_resets() -> None:
    backoff = Backoff(1.0, 5.0)
    assert [backoff.next_delay() for _ in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 1.0


HOST_SCRIPT = """
import sys, time
from pathlib import Path
from chatgate.engines.runtime.supervisor import EngineSupervisor
command = [sys.executable, sys.argv[1], "--port"]
supervisor = EngineSupervisor("orphan", lambda port: [*command, str(port)])
supervisor.start()
assert supervisor.wait_ready(10)
print(supervisor.status().pid, flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_engine_dies_when_its_supervisor_process_is_killed() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC_DIR), *sys.path])}
    host = subprocess.Popen(
        [sys.executable, "-c", HOST_SCRIPT, str(FAKE_ENGINE)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    engine_pid: int | None = None
    try:
        assert host.stdout is not None
        pid = engine_pid = int(host.stdout.readline())
        assert pid_alive(pid)

        host.kill()
        host.wait(5)

        assert wait_for(lambda: not pid_alive(pid), 5)
    finally:
        host.kill()
        host.wait(5)
        assert host.stdout is not None
        host.stdout.close()
        if engine_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(engine_pid, signal.SIGKILL)

"""Run one engine server process and keep it alive.

The supervisor is thread-based on purpose: the CLI starts it before uvicorn,
and uvicorn may run several worker processes, so it cannot live on an event
loop. Other processes (the workers, ``chatgate status``) learn where the engine
is and how it is doing from a small JSON state file that is rewritten
atomically on every change.

Every engine process is spawned by the monitor thread, which lives exactly as
long as the engine may run: on Linux the child asks for SIGTERM when its
spawning thread dies (``PR_SET_PDEATHSIG``), so the engine also dies when
chatgate is SIGKILLed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from chatgate.engines.runtime.liveness import (
    Backoff,
    CrashWindow,
    Liveness,
    LivenessWatch,
    crash_loop_message,
)
from chatgate.engines.runtime.process import (
    describe_exit,
    log_file_for,
    pick_free_port,
    port_is_free,
    read_log_tail,
    rotate_log,
    signal_group,
    spawn_in_new_session,
    state_file_for,
    write_json_atomically,
)

log = logging.getLogger("chatgate.engines")

EngineState = Literal["starting", "ready", "restarting", "failed", "stopped"]

POLL_INTERVAL_S = 0.25
PROBE_TIMEOUT_S = 1.0
PROGRESS_EVERY_S = 5.0
MAX_ERROR_CHARS = 1200
_WAITING_STATES = frozenset({"starting", "restarting"})
_STATUS_FIELDS = frozenset(
    {"state", "pid", "restarts", "last_error", "started_at", "wedged_restarts"}
)
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class SupervisorStatus:
    """A consistent snapshot of one supervised engine."""

    name: str
    state: str  # "starting" | "ready" | "restarting" | "failed" | "stopped"
    pid: int | None
    port: int
    base_url: str  # "http://127.0.0.1:PORT/v1"
    restarts: int
    last_error: str | None
    started_at: float | None
    wedged_restarts: int = 0


@dataclass
class _RunOutcome:
    """How one engine process ended."""

    error: str | None  # None when the supervisor was asked to stop
    reached_ready: bool = False
    ready_seconds: float = 0.0
    fatal: bool = False  # retrying cannot help
    returncode: int | None = None  # it exited by itself (None: killed by us, or never ran)


class EngineSupervisor:
    """Runs one engine server process and restarts it when it dies.

    ``command(port)`` returns the argv for the engine; it is called for every
    (re)start with the same port, so the engine URL never changes. A supervisor
    is started once and stopped once.
    """

    def __init__(
        self,
        name: str,
        command: Callable[[int], list[str]],
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        run_dir: Path | None = None,
        log_dir: Path | None = None,
        ready_path: str = "/v1/models",
        ready_timeout: float = 600.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        env: dict[str, str] | None = None,
        max_quick_failures: int = 10,
        stable_after: float = 60.0,
        liveness: Liveness | None = None,
    ) -> None:
        if not _VALID_NAME.match(name):
            raise ValueError(f"engine name must match {_VALID_NAME.pattern}, got {name!r}")
        self.name = name
        self.host = host
        self.port = port if port is not None else pick_free_port(host)
        self._command = command
        self._ready_url = f"http://{self._url_host}:{self.port}/{ready_path.lstrip('/')}"
        self._ready_timeout = ready_timeout
        self._backoff = Backoff(backoff_initial, backoff_max)
        self._liveness = liveness or Liveness()
        self._crashes = CrashWindow(self._liveness.crash_limit, self._liveness.crash_window)
        self._listeners: list[Callable[[SupervisorStatus], None]] = []
        self._extra_env = dict(env or {})
        self._max_quick_failures = max_quick_failures
        self._stable_after = stable_after
        self.state_file = state_file_for(run_dir, name) if run_dir else None
        self.log_file = log_file_for(log_dir, name) if log_dir else None
        # The probe must reach the loopback engine directly, whatever *_proxy says.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        self._changed = threading.Condition(threading.Lock())
        self._state: EngineState = "stopped"
        self._pid: int | None = None
        self._restarts = 0
        self._last_error: str | None = None
        self._started_at: float | None = None
        self._wedged_restarts = 0
        self._stop_requested = threading.Event()
        self._stop_timeout = 10.0
        self._thread: threading.Thread | None = None

    # ----- public API

    @property
    def base_url(self) -> str:
        return f"http://{self._url_host}:{self.port}/v1"

    def start(self) -> None:
        """Spawn the engine from a new monitor thread; returns at once."""
        if self._thread is not None:
            raise RuntimeError(f"engine supervisor {self.name!r} was already started")
        for path in (self.state_file, self.log_file):
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        # Daemon: if the CLI never calls stop(), exiting still ends the thread, and
        # with it the engine (parent-death signal).
        thread = threading.Thread(target=self._monitor, name=f"engine-{self.name}", daemon=True)
        self._update(state="starting")
        thread.start()
        with self._changed:
            self._thread = thread

    def wait_ready(
        self,
        timeout: float,
        progress: Callable[[str], None] | None = None,
        *,
        progress_every: float = PROGRESS_EVERY_S,
    ) -> bool:
        """Block until the engine answers; False on timeout or when it failed/stopped."""
        started = time.monotonic()
        deadline = started + timeout
        next_progress = started + progress_every
        while True:
            now = time.monotonic()
            with self._changed:
                self._changed.wait_for(
                    lambda: self._state not in _WAITING_STATES,
                    timeout=max(0.0, min(deadline, next_progress) - now),
                )
                if self._state not in _WAITING_STATES:
                    return self._state == "ready"
                message = self._progress_line(time.monotonic() - started)
            now = time.monotonic()
            if now >= deadline:
                return False
            if progress is not None and now >= next_progress:
                progress(message)  # outside the lock: the callback may do anything
                next_progress = now + progress_every

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the engine's process group, SIGKILL after ``timeout``; idempotent."""
        with self._changed:
            thread = self._thread
            if thread is None or self._stop_requested.is_set():
                return
            self._stop_timeout = timeout
            self._stop_requested.set()
            self._changed.notify_all()
        thread.join(timeout + 5.0)
        if thread.is_alive():
            log.error("engine %s: monitor thread did not finish after stop()", self.name)
        self._update(state="stopped", pid=None)
        log.info("engine %s stopped", self.name)

    def status(self) -> SupervisorStatus:
        with self._changed:
            return SupervisorStatus(
                name=self.name,
                state=self._state,
                pid=self._pid,
                port=self.port,
                base_url=self.base_url,
                restarts=self._restarts,
                last_error=self._last_error,
                started_at=self._started_at,
                wedged_restarts=self._wedged_restarts,
            )

    def add_listener(self, listener: Callable[[SupervisorStatus], None]) -> None:
        """Call ``listener(status)`` after every change (from the supervisor's thread)."""
        self._listeners.append(listener)

    # ----- state

    @property
    def _url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def _progress_line(self, elapsed: float) -> str:
        line = f"waiting for engine {self.name} on {self.host}:{self.port} ({elapsed:.0f}s)…"
        if self._state == "restarting" and self._last_error:
            line += f" restarting after: {self._last_error.splitlines()[0]}"
        return line

    def _update(self, **changes: Any) -> None:
        """Apply changes, persist them and wake waiters, all under the lock."""
        unknown = changes.keys() - _STATUS_FIELDS
        if unknown:
            raise TypeError(f"unknown supervisor status fields: {sorted(unknown)}")
        with self._changed:
            if self._stop_requested.is_set() and changes.get("state") != "stopped":
                # After stop() only stop() itself may touch the state, so it ends "stopped".
                changes.pop("state", None)
            for key, value in changes.items():
                setattr(self, f"_{key}", value)
            self._write_state_file()
            self._changed.notify_all()
        if self._listeners:
            status = self.status()
            for listener in self._listeners:
                try:
                    listener(status)
                except Exception:  # a listener must not break supervision
                    log.exception("engine %s: status listener failed", self.name)

    def _write_state_file(self) -> None:
        if self.state_file is None:
            return
        payload = {
            "name": self.name,
            "pid": self._pid,
            "port": self.port,
            "base_url": self.base_url,
            "state": self._state,
            "restarts": self._restarts,
            "last_error": self._last_error,
            "updated_at": time.time(),
            "started_at": self._started_at,
            "wedged_restarts": self._wedged_restarts,
            "log_file": str(self.log_file) if self.log_file else None,
        }
        try:
            write_json_atomically(self.state_file, payload)
        except OSError:
            # The engine itself is fine; losing one status update must not stop supervision.
            log.exception("engine %s: could not write state file %s", self.name, self.state_file)

    # ----- monitor thread

    def _monitor(self) -> None:
        try:
            self._supervise()
        except Exception as exc:
            log.exception("engine %s: supervisor crashed", self.name)
            self._update(state="failed", pid=None, last_error=f"supervisor error: {exc!r}")

    def _supervise(self) -> None:
        quick_failures = 0
        while not self._stop_requested.is_set():
            outcome = self._run_once()
            if outcome.error is None:
                return
            if outcome.fatal:
                self._fail(outcome.error)
                return
            if outcome.returncode is not None and self._crashes.record():
                self._fail(self._crash_loop(outcome))
                return
            if outcome.reached_ready:
                quick_failures = 0
                if outcome.ready_seconds >= self._stable_after:
                    self._backoff.reset()
            else:
                quick_failures += 1
            if quick_failures >= self._max_quick_failures:
                self._fail(f"gave up after {quick_failures} failed starts; last: {outcome.error}")
                return
            delay = self._backoff.next_delay()
            log.warning("engine %s: %s; restarting in %.1fs", self.name, outcome.error, delay)
            self._update(state="restarting", pid=None, last_error=outcome.error)
            if self._stop_requested.wait(delay):
                return
            self._update(restarts=self._restarts + 1)

    def _fail(self, reason: str) -> None:
        log.error("engine %s failed: %s", self.name, reason)
        self._update(state="failed", pid=None, last_error=reason)

    def _crash_loop(self, outcome: _RunOutcome) -> str:
        assert outcome.returncode is not None
        hint = self._liveness.hint(outcome.returncode) if self._liveness.hint else None
        message = crash_loop_message(
            self.name,
            len(self._crashes),
            self._liveness.crash_window,
            describe_exit(outcome.returncode),
            hint,
        )
        tail = read_log_tail(self.log_file) if self.log_file else ""
        if tail:
            message += "\nLast log lines:\n" + tail[-(MAX_ERROR_CHARS - len(message)) :]
        return message

    def _run_once(self) -> _RunOutcome:
        """Start one engine process and follow it until it ends or stop() is called."""
        if not port_is_free(self.host, self.port):
            return _RunOutcome(f"port {self.host}:{self.port} is already in use")
        try:
            process = self._spawn()
        except (FileNotFoundError, PermissionError) as exc:
            # A missing or non-executable program will not fix itself.
            return _RunOutcome(f"could not start engine: {exc}", fatal=True)
        except (OSError, subprocess.SubprocessError) as exc:
            return _RunOutcome(f"could not start engine: {exc}")
        try:
            return self._follow(process)
        finally:
            self._reap(process)

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = self._command(self.port)
        log.info("engine %s: starting on port %d: %s", self.name, self.port, shlex.join(argv))
        with self._open_log(argv) as output:
            process = spawn_in_new_session(argv, output, self._extra_env)
        self._update(pid=process.pid, started_at=time.time())
        return process

    @contextlib.contextmanager
    def _open_log(self, argv: list[str]) -> Iterator[IO[bytes] | None]:
        if self.log_file is None:
            yield None
            return
        rotate_log(self.log_file)
        with self.log_file.open("ab") as output:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            header = f"\n--- chatgate {stamp}: starting engine {self.name}: {shlex.join(argv)}\n"
            output.write(header.encode())
            output.flush()
            yield output

    def _follow(self, process: subprocess.Popen[bytes]) -> _RunOutcome:
        deadline = time.monotonic() + self._ready_timeout
        watch: LivenessWatch | None = None  # set once ready
        probes = ThreadPoolExecutor(1, thread_name_prefix=f"probe-{self.name}")
        try:
            while True:
                returncode = process.poll()
                if self._stop_requested.is_set():
                    return _RunOutcome(error=None)
                if returncode is not None:
                    ran = watch.age() if watch is not None else 0.0
                    error = self._exit_error(returncode)
                    return _RunOutcome(error, watch is not None, ran, returncode=returncode)
                if watch is None:
                    if self._is_ready():
                        watch = LivenessWatch(self._liveness)
                        log.info("engine %s ready at %s, pid %d (a 1-token generation worked)",
                                 self.name, self.base_url, process.pid)  # fmt: skip
                        self._update(state="ready")
                    elif time.monotonic() >= deadline:
                        return _RunOutcome(f"not ready within {self._ready_timeout:g}s")
                elif (wedged := watch.check(probes, self._generate)) is not None:
                    return self._restart_wedged(wedged)
                self._stop_requested.wait(POLL_INTERVAL_S)
        finally:
            # A hanging probe ends when the engine is reaped; nobody waits for it here.
            probes.shutdown(wait=False, cancel_futures=True)

    def _restart_wedged(self, reason: str) -> _RunOutcome:
        log.error("engine %s is wedged (%s): restarting it", self.name, reason)
        self._update(wedged_restarts=self._wedged_restarts + 1)
        return _RunOutcome(f"restarted: {reason}", reached_ready=True)

    def _is_ready(self) -> bool:
        probe = self._liveness.probe
        if probe is None:
            return self._probe()
        root = self.base_url.removesuffix("/v1")
        if not probe.healthy(root, PROBE_TIMEOUT_S):
            return False
        # Up is not enough: an engine whose kernels crash answers /health until it
        # generates. The first token proves it (and a crash shows up as the exit).
        error = probe.generate(root, self._liveness.ready_probe_timeout)
        if error is not None:
            log.info("engine %s not ready yet: %s", self.name, error)
        return error is None

    def _generate(self) -> str | None:
        probe = self._liveness.probe
        assert probe is not None
        return probe.generate(self.base_url.removesuffix("/v1"), self._liveness.wedged_seconds)

    def _probe(self) -> bool:
        try:
            with self._opener.open(self._ready_url, timeout=PROBE_TIMEOUT_S) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            exc.close()
            return False
        except (urllib.error.URLError, OSError):
            # Not listening yet (or busy loading): that is what we are waiting for.
            return False

    def _exit_error(self, returncode: int) -> str:
        error = describe_exit(returncode)
        tail = read_log_tail(self.log_file) if self.log_file else ""
        if not tail:
            return error
        head = f"{error}; last log lines:\n"
        # Keep the end of the log: the final lines usually say why it died.
        return head + tail[-(MAX_ERROR_CHARS - len(head)) :]

    def _reap(self, process: subprocess.Popen[bytes]) -> None:
        """End the engine's whole process group and collect the exit status."""
        if process.poll() is None:
            signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(self._stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("engine %s ignored SIGTERM; sending SIGKILL", self.name)
        # Also kills helpers the engine left behind, which could keep holding the port.
        signal_group(process.pid, signal.SIGKILL)
        process.wait()

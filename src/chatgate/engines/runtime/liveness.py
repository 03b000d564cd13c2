"""Is a supervised engine really working? Probes, crash loops and their diagnosis.

A listing endpoint proves little: an engine whose CPU kernels crash answers ``/health``
and ``/v1/models`` until its first generation kills it. So an engine is ready only once it
generated a token, and while it runs the supervisor asks for one token now and then
(``EngineProbe``). An embedding-only engine (``task: embed``: vLLM started as a pooling
model, which cannot generate) is proven the same way by a real result of its own kind:
the vector of a one-input ``/v1/embeddings`` request. Crashes are counted in a sliding
window (``CrashWindow``): a few within minutes are a diagnosis to show, not a reason to
restart forever.

Everything here is synchronous (urllib): the supervisor runs in a thread of its own.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from chatgate.engines.upstream.endpoint import Task
from chatgate.engines.upstream.health import PROBE_PROMPT, result_error

# Signals that mean the engine's native code crashed (rather than being killed by someone).
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE,
                           signal.SIGABRT})  # fmt: skip
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class EngineProbe:
    """How to ask an OpenAI-compatible engine whether it is up and gives real results
    (tokens; vectors for an embedding-only engine)."""

    model: str  # the name the engine serves the model under
    health_path: str | None = "/health"  # answers 200 once the model is loaded; None: none
    task: Task = "generate"  # "embed": proven by an embedding (it cannot generate)

    def healthy(self, root_url: str, timeout: float) -> bool:
        """The cheap check: the server is up and says it is ready."""
        if self.health_path is None:
            return True
        try:
            with _NO_PROXY.open(root_url + self.health_path, timeout=timeout) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as exc:
            exc.close()
            return False
        except (urllib.error.URLError, OSError):
            return False  # not listening yet, or busy loading

    def generate(self, root_url: str, timeout: float) -> str | None:
        """A real result: one token through ``/v1/completions``, or for an embedding-only
        engine one vector through ``/v1/embeddings``. None when it worked, else why not."""
        if self.task == "embed":
            return self._ask(root_url, timeout, "/v1/embeddings", "a 1-input embedding",
                             {"model": self.model, "input": PROBE_PROMPT})  # fmt: skip
        body = {"model": self.model, "prompt": PROBE_PROMPT, "max_tokens": 1, "temperature": 0}
        return self._ask(root_url, timeout, "/v1/completions", "a 1-token generation", body)

    def _ask(
        self, root_url: str, timeout: float, path: str, what: str, body: dict[str, Any]
    ) -> str | None:
        request = urllib.request.Request(
            root_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with _NO_PROXY.open(request, timeout=timeout) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode(errors="replace")
            exc.close()
            return f"{what} failed: HTTP {exc.code} {detail}".strip()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return f"{what} failed: {type(exc).__name__}: {exc}"
        return result_error(self.task, data)


@dataclass(frozen=True)
class Liveness:
    """How a supervisor proves its engine works (see ``liveness.py``)."""

    probe: EngineProbe | None = None  # None: ready once ``ready_path`` answers 200
    crash_limit: int = 3  # exits within crash_window that make a crash loop
    crash_window: float = 300.0
    wedged_seconds: float = 180.0  # no token for this long while running: restart
    probe_interval: float = 60.0
    ready_probe_timeout: float = 60.0  # the first token of a freshly loaded engine
    hint: Callable[[int], str | None] | None = None  # advice for a crash (exit status)


class CrashWindow:
    """Exits of an engine within the last ``window`` seconds (bounded by ``limit``)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit = max(1, limit)
        self.window = window
        self._clock = clock
        self._times: deque[float] = deque(maxlen=self.limit)

    def record(self) -> bool:
        """Count one crash; True when that makes a crash loop."""
        now = self._clock()
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        return len(self._times) >= self.limit

    def __len__(self) -> int:
        return len(self._times)


class Backoff:
    """Delay before the next restart: doubles up to a maximum, resettable."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._next = initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._next = self.initial


def crash_signal(returncode: int) -> signal.Signals | None:
    """The crash signal an exit status means, if any."""
    if returncode >= 0:
        return None
    try:
        sig = signal.Signals(-returncode)
    except ValueError:
        return None
    return sig if sig in CRASH_SIGNALS else None


def crash_loop_message(
    name: str, crashes: int, window: float, last_exit: str, hint: str | None
) -> str:
    """One sentence for users and admins, then what helps to fix it."""
    sentence = (
        f"The engine {name} crashed {crashes} times within {window:g} s "
        f"(last: {last_exit}) and is not restarted any more."
    )
    return f"{sentence} {hint}" if hint else sentence


CPU_CRASH_HINT = (
    "Its native code crashed: the CPU may lack an instruction the build uses, or one of its "
    "CPU kernels is broken on this machine. Run `chatgate doctor` (CPU features, the engine "
    "build and the variant it loads, a 1-token test)."
)


class LivenessWatch:
    """While an engine runs: one 1-token probe every ``probe_interval``; an engine that
    produced no token for ``wedged_seconds`` (probes hanging or failing) is wedged."""

    def __init__(self, liveness: Liveness) -> None:
        self._liveness = liveness
        self._since = time.monotonic()
        self._last_good = self._since
        self._next_probe = self._since + liveness.probe_interval
        self._pending: Future[str | None] | None = None
        self._last_error: str | None = None

    def age(self) -> float:
        return time.monotonic() - self._since

    def check(self, pool: ThreadPoolExecutor, generate: Callable[[], str | None]) -> str | None:
        """Why the engine counts as wedged now, or None."""
        if self._liveness.probe is None:
            return None
        now = time.monotonic()
        if self._pending is not None and self._pending.done():
            self._last_error = self._pending.result()
            if self._last_error is None:
                self._last_good = now
            self._pending = None
        if self._pending is None and now >= self._next_probe:
            self._pending = pool.submit(generate)
            self._next_probe = now + self._liveness.probe_interval
        silent = now - self._last_good
        if silent < self._liveness.wedged_seconds:
            return None
        why = self._last_error or "the probe got no answer"
        return f"no token for {silent:.0f} s ({why})"

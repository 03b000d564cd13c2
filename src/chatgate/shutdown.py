"""A shutdown that fits its grace period (``CHATGATE_SHUTDOWN_GRACE_SECONDS``).

On SIGTERM the gateway *drains*: readiness answers 503 and new requests are refused
(``middleware.DrainGuard``), while the streams already running go on until the deadline
(the grace period less a margin), and so do the requests the guard let in before, even
those that have not reached their engine yet (``Drain.admitted``). Whatever still runs
then is cut short on purpose: its engine response is closed, so the read fails and is
reported as ``ServerShuttingDown`` (saved and billed ``interrupted``, 503, with a terminal
``server_shutting_down`` event), never as a client that left. The margin pays for that
last save, uvicorn's own wait for connections and the lifespan's cleanup
(``ShutdownBudget``).

Nothing here runs per chunk: a request registers once (``Drain.track``) and the deadline
acts on the registered ones.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

import aiohttp

from chatgate.engines.upstream.client import EngineError

log = logging.getLogger("chatgate.shutdown")

SHUTTING_DOWN = "server_shutting_down"
SHUTTING_DOWN_MESSAGE = "The server is shutting down: the answer was cut short. Please retry."
SHUTTING_DOWN_REFUSAL = "The server is shutting down and takes no new requests. Please retry."
# What a refused request is told: another replica (or this one, restarted) takes it soon.
RETRY_AFTER_SECONDS = 5
MARGIN_MAX_SECONDS = 5.0
MARGIN_SHARE = 0.25


class ServerShuttingDown(EngineError):
    """The gateway cut this engine request short at the drain deadline. Not the engine's
    fault (no failover, no circuit count) and not the client's (no ``cancelled``)."""

    def __init__(self, message: str = SHUTTING_DOWN_MESSAGE) -> None:
        super().__init__(message, SHUTTING_DOWN, 503)

    @property
    def retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)}


@dataclass(frozen=True)
class ShutdownBudget:
    """How one grace period is spent, so that SIGTERM to exit stays within it.

    Streams run until ``deadline`` (grace less the margin: min(5 s, 25 %)); the margin
    then pays for the interrupted streams to say so and be saved (``settle``), uvicorn's
    wait for open connections (``server_seconds``), the lifespan's wait for web-chat
    generations (``lifespan_seconds``), and leaves a tenth for closing the rest (the usage
    writer's flush, the database pool). Each is an upper bound: normally each step takes
    milliseconds.
    """

    grace: float

    @property
    def margin(self) -> float:
        return min(MARGIN_MAX_SECONDS, self.grace * MARGIN_SHARE)

    @property
    def deadline(self) -> float:
        return self.grace - self.margin

    @property
    def settle(self) -> float:
        return self.margin * 0.4

    @property
    def server_seconds(self) -> float:
        return self.margin * 0.3

    @property
    def lifespan_seconds(self) -> float:
        return self.margin * 0.2


class Flight:
    """One engine request the drain may cut short: while it waits for a slot or opens
    its stream, through a cancel scope (``interruptible``); once the stream is handed
    over, by closing its response (``hold``), so the reader fails where it reads."""

    __slots__ = ("_response", "_timeout", "interrupted")

    def __init__(self) -> None:
        self.interrupted = False
        self._timeout: asyncio.Timeout | None = None
        self._response: aiohttp.ClientResponse | None = None

    def interruptible(self) -> _Interruptible:
        """``async with flight.interruptible():`` the deadline ends what runs inside with
        ``ServerShuttingDown`` (a queue wait, connecting, reading a non-streamed answer)."""
        return _Interruptible(self)

    def hold(self, response: aiohttp.ClientResponse) -> None:
        """The stream was handed over: from now on the deadline closes its response."""
        self._response = response
        if self.interrupted:
            response.close()

    def interrupt(self) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        if self._timeout is not None:
            self._timeout.reschedule(asyncio.get_running_loop().time())
        if self._response is not None:
            self._response.close()


class _Interruptible:
    """A cancel scope (``asyncio.timeout`` with no deadline until the drain sets one):
    its expiry is told apart from any other cancellation (a client that left)."""

    __slots__ = ("_flight",)

    def __init__(self, flight: Flight) -> None:
        self._flight = flight

    async def __aenter__(self) -> None:
        if self._flight.interrupted:
            raise ServerShuttingDown()
        timeout = asyncio.timeout(None)
        await timeout.__aenter__()
        self._flight._timeout = timeout  # noqa: SLF001 - the flight's own scope

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        timeout, self._flight._timeout = self._flight._timeout, None  # noqa: SLF001
        assert timeout is not None
        try:
            await timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as expired:  # only ours: the scope has no other deadline
            raise ServerShuttingDown() from expired


class Drain:
    """The process's drain: whether it is draining, the engine requests in flight, and
    the deadline at which those still running are cut short. ``clock`` (monotonic
    seconds) is injectable so tests can jump past the deadline."""

    def __init__(self, budget: ShutdownBudget, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self._clock = clock
        self.began: float | None = None
        self.interrupted = False
        self._flights: set[Flight] = set()
        self._admitted = 0
        self._idle = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self.began is not None

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    @property
    def busy(self) -> bool:
        """Anything the drain waits for: engine requests, requests let in before it."""
        return bool(self._flights) or self._admitted > 0

    def begin(self) -> None:
        """Readiness 503, new requests refused; running ones go on (idempotent)."""
        if self.began is None:
            self.began = self._clock()
            log.warning(
                "draining: %d engine requests in flight, cut short in %.1f s if still running",
                len(self._flights),
                self.budget.deadline,
            )

    def remaining(self) -> float:
        """Seconds until the deadline (the whole of it before the drain began)."""
        if self.began is None:
            return self.budget.deadline
        return max(0.0, self.began + self.budget.deadline - self._clock())

    @contextmanager
    def track(self) -> Iterator[Flight]:
        """Register one engine request for its whole life; refused past the deadline."""
        if self.interrupted:
            raise ServerShuttingDown()
        flight = Flight()
        self._flights.add(flight)
        try:
            yield flight
        finally:
            self._flights.discard(flight)
            self._settled()

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """One request the guard let in (one that does something: not a read), for its
        whole life. The drain waits for it as for an engine request: a chat that was
        storing its turn when SIGTERM came has none yet, and ending the drain because
        nothing else was in flight would leave it to the server's last seconds, cut in
        mid-stream. Reads are not held: a client following a stream reconnects elsewhere."""
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1
            self._settled()

    def _settled(self) -> None:
        if not self.busy:
            self._idle.set()

    def interrupt(self) -> None:
        """The deadline: cut every engine request still in flight short (idempotent)."""
        self.begin()
        if not self.interrupted:
            self.interrupted = True
            if self._flights:
                log.warning("drain deadline: cutting %d engine requests short", len(self._flights))
        for flight in list(self._flights):
            flight.interrupt()

    async def run(self) -> None:
        """Drain: wait for the requests in flight until the deadline, cut the rest short
        and give them ``settle`` seconds to report and save. Returns when nothing is in
        flight any more or that time is up."""
        self.begin()
        if await self._idle_within(self.remaining()):
            return
        self.interrupt()
        if not await self._idle_within(self.budget.settle):
            log.error(
                "drain: %d engine requests and %d others did not end in time",
                len(self._flights),
                self._admitted,
            )

    async def _idle_within(self, seconds: float) -> bool:
        if not self.busy:
            return True
        self._idle.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._idle.wait()
        except TimeoutError:
            return not self.busy
        return True


Handler = Callable[[int, FrameType | None], Any]


class SigtermDrain:
    """Wraps the server's (uvicorn's) SIGTERM and SIGINT handlers, which are installed
    before the app's lifespan runs: the first SIGTERM starts the drain and reaches
    uvicorn only once the drain is done, so the listener keeps serving the streams
    meanwhile. A second SIGTERM or a SIGINT cuts what runs short and passes on at once.

    Signal handlers run between bytecodes of the main thread: they only schedule work
    on the loop (``call_soon_threadsafe``) and call uvicorn's handler, which sets flags.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, drain: Drain, loop: asyncio.AbstractEventLoop) -> None:
        self._drain = drain
        self._loop = loop
        self._previous: dict[int, Handler] = {}
        self._sigterm_seen = False
        self._task: asyncio.Task[None] | None = None

    def install(self) -> bool:
        """Take over SIGTERM/SIGINT; False (nothing done) off the main thread or when no
        server handler is there to hand over to."""
        if threading.current_thread() is not threading.main_thread():
            return False
        previous = {sig: signal.getsignal(sig) for sig in self.SIGNALS}
        handlers: dict[int, Handler] = {int(s): h for s, h in previous.items() if callable(h)}
        if len(handlers) != len(previous):
            return False
        self._previous = handlers
        for sig in self.SIGNALS:
            signal.signal(sig, self._on_signal)
        return True

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, handler)
        self._previous = {}

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGTERM and not self._sigterm_seen:
            self._sigterm_seen = True
            self._loop.call_soon_threadsafe(self._start, signum)
            return
        self._loop.call_soon_threadsafe(self._drain.interrupt)
        self._pass_on(signum, frame)

    def _start(self, signum: int) -> None:
        self._task = self._loop.create_task(self._drain_then_pass_on(signum), name="drain")

    async def _drain_then_pass_on(self, signum: int) -> None:
        try:
            await self._drain.run()
        finally:
            self._pass_on(signum, None)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        handler = self._previous.get(signum)
        if handler is not None:
            handler(signum, frame)

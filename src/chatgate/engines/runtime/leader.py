"""Which process supervises the fleet's local engine: a leader lease.

Every ``chatgate serve`` process (each replica, each ``--workers`` worker) could start
the engine; exactly one may, or two engines fight over one GPU and one port. The one
holding this lease is the *leader*: it supervises the engine and performs model switches
(``coordinator.py``); the others route to the engine it publishes.

Two backends, one contract (``LeaseBackend``):

The engine listens on the leader's loopback, so only processes of one host can share it: the
lease and the state are per host (``engine_scope``). Replicas on one host (``--workers N``,
serves sharing a Redis or a data dir) run one engine; other hosts (pods) run their own.

- **Redis** (``CHATGATE_REDIS_URL``): a key ``<prefix>:engine:<host>:leader`` holding the leader's
  random token, ``SET NX PX`` to take it, a Lua compare-and-extend to renew it every
  ``min(1 s, ttl/3)`` and a compare-and-delete to give it back at shutdown. A leader killed
  with -9 stops renewing; its key expires after the lease (``CHATGATE_ENGINE_LEADER_LEASE_SECONDS``)
  and the next follower to try takes it.
- **A file lock** (no Redis: one host, ``--workers N`` or several serves on one data dir):
  ``fcntl.flock`` on ``<data dir>/run/fleet/leader.lock``. The kernel drops it when the
  process dies, so a follower takes over on its next try (within a second).

While Redis cannot be reached the leader keeps its engine (nobody else can take the lease
from a Redis nobody reaches; the rest of the fleet degrades the same way), and ``confirmed``
turns False once a lease time passed without a renewal. If the lease was taken meanwhile
(only possible in a partition where others still reach Redis), the leader learns it on
its next renewal and steps down. The keeper runs on a thread: the CLI holds the lease while
it starts the engine, before any event loop exists, and a stalled loop must not lose it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

import redis
from redis.exceptions import RedisError

log = logging.getLogger("chatgate.engines")

LEASE_ERRORS = (RedisError, OSError, TimeoutError)
# Renew (or try to take) the lease this often at most; a third of the lease at least.
MAX_TICK_SECONDS = 1.0

RENEW_LUA = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseBackend(Protocol):
    """Where the lease lives. Errors (Redis away) raise one of ``LEASE_ERRORS``."""

    def acquire(self, token: str, ttl_ms: int) -> bool: ...

    def renew(self, token: str, ttl_ms: int) -> bool:
        """Extend our lease (or retake it when it lapsed and is free); False: taken."""
        ...

    def release(self, token: str) -> None: ...

    def close(self) -> None: ...


class RedisLeaseBackend:
    def __init__(self, url: str, key: str) -> None:
        self.key = key
        self._redis = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def acquire(self, token: str, ttl_ms: int) -> bool:
        return bool(self._redis.set(self.key, token, nx=True, px=ttl_ms))

    def renew(self, token: str, ttl_ms: int) -> bool:
        return int(self._redis.eval(RENEW_LUA, 1, self.key, token, ttl_ms)) == 1

    def release(self, token: str) -> None:
        self._redis.eval(RELEASE_LUA, 1, self.key, token)

    def close(self) -> None:
        self._redis.close()


class FileLeaseBackend:
    """An exclusive ``flock``: held while this process keeps the file open."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, token: str, ttl_ms: int) -> bool:
        if self._file is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        except BaseException:
            handle.close()
            raise
        handle.truncate(0)
        handle.write(f"{os.getpid()} {token}\n")
        handle.flush()
        self._file = handle
        return True

    def renew(self, token: str, ttl_ms: int) -> bool:
        return self._file is not None

    def release(self, token: str) -> None:
        if self._file is not None:
            handle, self._file = self._file, None
            with contextlib.suppress(OSError):
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            handle.close()

    def close(self) -> None:
        self.release("")


Listener = Callable[[bool], None]


class LeaderLease:
    """Take the lease when it is free, keep it renewed, tell listeners when that changes.

    ``tick()`` is one step (take or renew); the keeper thread calls it every
    ``interval`` seconds, tests call it with an injected ``clock``.
    """

    def __init__(
        self,
        backend: LeaseBackend,
        ttl_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.token = uuid.uuid4().hex
        self.ttl = ttl_seconds
        self.interval = min(MAX_TICK_SECONDS, ttl_seconds / 3)
        self._clock = clock
        self._lock = threading.Lock()
        self._held = False
        self._confirmed_at = float("-inf")
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    @property
    def held(self) -> bool:
        return self._held

    @property
    def confirmed(self) -> bool:
        """Held, and renewed within the lease time (False while Redis is unreachable)."""
        return self._held and self._clock() - self._confirmed_at < self.ttl

    def add_listener(self, listener: Listener) -> None:
        """``listener(held)`` on every change, from the keeper's thread."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def tick(self) -> bool:
        """Take the lease if free, or renew ours; returns whether we hold it."""
        ttl_ms = max(1, int(self.ttl * 1000))
        with self._lock:
            try:
                if self._held:
                    ok = self.backend.renew(self.token, ttl_ms)
                else:
                    ok = self.backend.acquire(self.token, ttl_ms)
            except LEASE_ERRORS as exc:
                if not self._failing:
                    log.warning("engine leader lease unreachable (%s); keeping what we have", exc)
                self._failing = True
                return self._held
            self._failing = False
            if ok:
                self._confirmed_at = self._clock()
            changed = ok != self._held
            self._held = ok
        if changed:
            log.info("engine leader lease %s", "taken" if ok else "lost to another process")
            self._notify(ok)
        return ok

    def start(self) -> None:
        """Keep trying/renewing on a daemon thread (after an optional first ``tick()``)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="engine-leader", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """End the keeper; give the lease back (``release``) so a follower takes it at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._lock:
            was_held, self._held = self._held, False
            if release and was_held:
                with contextlib.suppress(*LEASE_ERRORS):
                    self.backend.release(self.token)
            with contextlib.suppress(*LEASE_ERRORS):
                self.backend.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # the keeper must outlive any surprise
                log.exception("engine leader lease keeper failed")

    def _notify(self, held: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(held)
            except Exception:
                log.exception("engine leader lease listener failed")


def fleet_dir(run_dir: Path) -> Path:
    """Where the file backends keep the lock and the shared state (one host)."""
    return run_dir / "fleet"


def engine_scope(prefix: str) -> str:
    """The Redis key space of this host's local engine: its processes share one engine."""
    return f"{prefix}:engine:{socket.gethostname()}"


def lease_for(redis_url: str | None, prefix: str, run_dir: Path, ttl_seconds: float) -> LeaderLease:
    """The lease of this deployment: in Redis when configured, else a file lock."""
    backend: LeaseBackend
    if redis_url:
        backend = RedisLeaseBackend(redis_url, f"{engine_scope(prefix)}:leader")
    else:
        backend = FileLeaseBackend(fleet_dir(run_dir) / "leader.lock")
    return LeaderLease(backend, ttl_seconds)

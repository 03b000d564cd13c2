"""Counters behind the limits: Redis when configured (shared by every gateway replica),
in memory otherwise.

Redis outage policy (SPEC §8): fail open to per-process counters, log it, show
``chatgate_ratelimit_fallback`` = 1, and try Redis again every few seconds; once it
answers, limits are shared again (the per-process counts of the outage are dropped).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from limits import RateLimitItem
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool, Redis
from redis.exceptions import RedisError

from chatgate.observability.metrics import Metrics

log = logging.getLogger("chatgate.limits")

T = TypeVar("T")
REDIS_TIMEOUT = 0.5
SLOT_TTL_SECONDS = 3600  # a crashed replica's slots free themselves
_FAILURES = (StorageError, RedisError, OSError, TimeoutError)


@dataclass
class Slot:
    """One held concurrent-stream slot; release it exactly once."""

    key: str
    shared: bool
    released: bool = False


class LimitStore:
    def __init__(
        self,
        redis_url: str | None,
        metrics: Metrics,
        retry_seconds: float = 5.0,
        prefix: str = "chatgate",
    ) -> None:
        self._prefix = prefix
        self._metrics = metrics
        self._retry_seconds = retry_seconds
        self._local = MovingWindowRateLimiter(MemoryStorage())
        self._local_slots: dict[str, int] = {}
        self._shared: MovingWindowRateLimiter | None = None
        self._redis: Redis | None = None
        self._pool: ConnectionPool | None = None
        if redis_url:
            # One pool for the limits storage and the slot counters, closed on shutdown.
            self._pool = ConnectionPool.from_url(
                redis_url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=f"{prefix}-limits",
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
            self._shared = MovingWindowRateLimiter(storage)
            self._redis = Redis(connection_pool=self._pool)
        self._down_until = 0.0
        self.fallback = False

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        if self._pool is not None:
            await self._pool.aclose()

    def _shared_usable(self) -> bool:
        return self._shared is not None and time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        self._down_until = time.monotonic() + self._retry_seconds
        if not self.fallback:
            log.error("Redis unreachable (%s): limits fall back to this process", exc)
        self.fallback = True
        self._metrics.ratelimit_fallback.set(1)

    def _recovered(self) -> None:
        if self.fallback:
            log.warning("Redis reachable again: limits are shared across replicas again")
        self.fallback = False
        self._metrics.ratelimit_fallback.set(0)

    async def _run(self, op: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        if self._shared is not None and self._shared_usable():
            try:
                result = await op(self._shared)
            except _FAILURES as exc:
                self._failed(exc)
            else:
                self._recovered()
                return result
        return await op(self._local)

    async def hit(self, item: RateLimitItem, key: str, cost: int = 1) -> bool:
        return await self._run(lambda limiter: limiter.hit(item, key, cost=cost))

    async def test(self, item: RateLimitItem, key: str, cost: int = 1) -> bool:
        return await self._run(lambda limiter: limiter.test(item, key, cost=cost))

    async def window(self, item: RateLimitItem, key: str) -> tuple[float, int]:
        """(reset time as epoch seconds, remaining) of the moving window."""
        stats = await self._run(lambda limiter: limiter.get_window_stats(item, key))
        return stats.reset_time, stats.remaining

    async def clear(self, item: RateLimitItem, key: str) -> None:
        await self._run(lambda limiter: limiter.clear(item, key))

    async def acquire_slot(self, key: str, limit: int) -> Slot | None:
        if self._redis is not None and self._shared_usable():
            try:
                return await self._acquire_shared(key, limit)
            except _FAILURES as exc:
                self._failed(exc)
        if self._local_slots.get(key, 0) >= limit:
            return None
        self._local_slots[key] = self._local_slots.get(key, 0) + 1
        return Slot(key, shared=False)

    async def _acquire_shared(self, key: str, limit: int) -> Slot | None:
        assert self._redis is not None
        name = f"{self._prefix}-streams:{key}"
        count = int(await self._redis.incr(name))
        await self._redis.expire(name, SLOT_TTL_SECONDS)
        self._recovered()
        if count > limit:
            await self._redis.decr(name)
            return None
        return Slot(key, shared=True)

    async def release_slot(self, slot: Slot) -> None:
        if slot.released:
            return
        slot.released = True
        if not slot.shared:
            remaining = self._local_slots.get(slot.key, 1) - 1
            if remaining > 0:
                self._local_slots[slot.key] = remaining
            else:
                self._local_slots.pop(slot.key, None)
            return
        assert self._redis is not None
        try:
            await self._redis.decr(f"{self._prefix}-streams:{slot.key}")
        except _FAILURES as exc:  # the key's TTL frees it later
            self._failed(exc)

"""A short-lived cache of resolved API-key identities, keyed by the key's SHA-256.

Without it every /v1 request pays one database round trip (and an ORM load of the
key and its owner) before anything else happens. Entries live a few seconds and the
cache is bounded. Changes made through this process (key revoked, user disabled or
changed, limits changed) drop the affected entries at once, and with Redis every other
gateway drops them when the fleet message arrives (``fleet.py``); a change made outside
any gateway (the CLI, a direct SQL update) is seen once the entry's TTL ran out, so
``DEFAULT_TTL_SECONDS`` bounds how stale a worker can be.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from chatgate.auth.identity import Identity

DEFAULT_TTL_SECONDS = 5.0
DEFAULT_MAX_ENTRIES = 10_000

# Every live cache of this process, so a service function that changed an account can
# invalidate it without knowing which app (tests run several) holds the cache.
_CACHES: weakref.WeakSet[IdentityCache] = weakref.WeakSet()


@dataclass(frozen=True)
class CachedKey:
    identity: Identity
    expires_at: datetime | None  # the key's own expiry, checked on every hit
    cached_at: float  # time.monotonic()


class IdentityCache:
    def __init__(
        self, ttl_seconds: float = DEFAULT_TTL_SECONDS, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._entries: dict[str, CachedKey] = {}
        _CACHES.add(self)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_hash: str, now: datetime) -> Identity | None:
        """The cached identity, unless it is older than the TTL or the key has expired."""
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        stale = time.monotonic() - entry.cached_at > self.ttl_seconds
        if stale or (entry.expires_at is not None and entry.expires_at <= now):
            # The database decides again (and words the 401 of an expired key).
            self._entries.pop(key_hash, None)
            return None
        return entry.identity

    def put(self, key_hash: str, identity: Identity, expires_at: datetime | None) -> None:
        if self.ttl_seconds <= 0:
            return
        if key_hash not in self._entries and len(self._entries) >= self.max_entries:
            self._evict()
        self._entries[key_hash] = CachedKey(identity, expires_at, time.monotonic())

    def _evict(self) -> None:
        # Expired entries first; if none, the oldest inserted (dicts keep insertion order).
        now = time.monotonic()
        stale = [k for k, e in self._entries.items() if now - e.cached_at > self.ttl_seconds]
        for key in stale or [next(iter(self._entries))]:
            del self._entries[key]

    def drop_user(self, user_id: int) -> None:
        for key in [k for k, e in self._entries.items() if e.identity.user_id == user_id]:
            del self._entries[key]

    def drop_key(self, key_id: int) -> None:
        for key in [k for k, e in self._entries.items() if e.identity.api_key_id == key_id]:
            del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()


# Hooks that tell the rest of the fleet (``fleet.FleetEvents``, one per app with Redis).
_PUBLISHERS: list[Callable[[str], None]] = []


def add_publisher(publish: Callable[[str], None]) -> None:
    _PUBLISHERS.append(publish)


def remove_publisher(publish: Callable[[str], None]) -> None:
    if publish in _PUBLISHERS:
        _PUBLISHERS.remove(publish)


def _tell_fleet(change: str) -> None:
    for publish in list(_PUBLISHERS):
        publish(change)


def invalidate_user(user_id: int, *, publish: bool = True) -> None:
    """The user changed (disabled, role, settings, limits): forget their keys everywhere
    (this process at once; the other gateways through the fleet channel)."""
    for cache in list(_CACHES):
        cache.drop_user(user_id)
    if publish:
        _tell_fleet(f"user:{user_id}")


def invalidate_key(key_id: int, *, publish: bool = True) -> None:
    """The key changed (revoked, limits): forget it everywhere."""
    for cache in list(_CACHES):
        cache.drop_key(key_id)
    if publish:
        _tell_fleet(f"key:{key_id}")


def invalidate_all(*, publish: bool = True) -> None:
    for cache in list(_CACHES):
        cache.clear()
    if publish:
        _tell_fleet("all")

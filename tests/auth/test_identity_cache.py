"""The API-key identity cache: TTL, key expiry, bound, and invalidation in this process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from chatgate.auth.cache import IdentityCache, invalidate_all, invalidate_key, invalidate_user
from chatgate.auth.identity import Identity
from tests.helpers import FakeClock, Gateway

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def identity(user_id: int = 1, key_id: int = 10) -> Identity:
    return Identity(user_id=user_id, username=f"u{user_id}", role="user", api_key_id=key_id)


def test_hit_within_ttl_then_miss_after(clock: FakeClock) -> None:
    cache = IdentityCache(ttl_seconds=5)
    cache.put("h1", identity(), None)
    assert cache.get("h1", NOW) == identity()
    clock.now += 4.9
    assert cache.get("h1", NOW) == identity()
    clock.now += 0.2
    assert cache.get("h1", NOW) is None
    assert len(cache) == 0  # the stale entry is gone, not kept around


def test_expired_key_is_never_served_from_cache(clock: FakeClock) -> None:
    cache = IdentityCache(ttl_seconds=60)
    cache.put("h1", identity(), NOW + timedelta(seconds=1))
    assert cache.get("h1", NOW) is not None
    assert cache.get("h1", NOW + timedelta(seconds=1)) is None


def test_bounded_evicts_stale_first_then_oldest(clock: FakeClock) -> None:
    cache = IdentityCache(ttl_seconds=5, max_entries=2)
    cache.put("old", identity(1, 1), None)
    clock.now += 10
    cache.put("b", identity(2, 2), None)
    cache.put("c", identity(3, 3), None)  # "old" is stale: it goes
    assert {cache.get(k, NOW) is not None for k in ("b", "c")} == {True}
    cache.put("d", identity(4, 4), None)  # none stale: the oldest inserted goes
    assert len(cache) == 2
    assert cache.get("b", NOW) is None and cache.get("d", NOW) is not None


def test_zero_ttl_disables_caching(clock: FakeClock) -> None:
    cache = IdentityCache(ttl_seconds=0)
    cache.put("h1", identity(), None)
    assert cache.get("h1", NOW) is None


def test_invalidation_reaches_every_cache_of_the_process(clock: FakeClock) -> None:
    first, second = IdentityCache(), IdentityCache()
    for cache in (first, second):
        cache.put("a", identity(user_id=1, key_id=10), None)
        cache.put("b", identity(user_id=1, key_id=11), None)
        cache.put("c", identity(user_id=2, key_id=20), None)
    invalidate_key(10)
    assert [c.get("a", NOW) for c in (first, second)] == [None, None]
    assert first.get("b", NOW) is not None
    invalidate_user(1)
    assert [c.get("b", NOW) for c in (first, second)] == [None, None]
    assert second.get("c", NOW) is not None
    invalidate_all()
    assert len(first) == len(second) == 0


async def test_key_requests_are_served_from_the_cache(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        first = await client.get("/v1/models", headers=account.key_headers)
        cached = gateway.state.identity_cache
        assert first.status_code == 200 and len(cached) >= 1
        # Served from the cache now: a revoked key is refused at once all the same,
        # because revoking through the service drops the entry.
        keys = (await client.get("/api/keys", headers=account.headers)).json()["keys"]
        revoked = await client.delete(f"/api/keys/{keys[0]['id']}", headers=account.headers)
        assert revoked.status_code == 200
        again = await client.get("/v1/models", headers=account.key_headers)
    assert again.status_code == 401

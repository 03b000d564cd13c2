"""Routing: load scores, sticky sessions within a slack, the bounded affinity map,
circuits in pick(), and the /v1 affinity key."""

from __future__ import annotations

import pytest

from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.engines.upstream.routing import (
    AFFINITY_SLACK,
    AffinityMap,
    choose,
    load_score,
    v1_affinity_key,
)
from chatgate.engines.upstream.scrape import EngineMetrics
from chatgate.errors import APIError
from tests.helpers import FakeClock


def ep(name: str, outstanding: int = 0, waiting: float | None = None) -> Endpoint:
    endpoint = Endpoint(name, f"http://{name}:8000/v1", "m", outstanding=outstanding)
    if waiting is not None:
        endpoint.metrics = EngineMetrics(requests_running=1, requests_waiting=waiting,
                                         kv_cache_usage=0.1)  # fmt: skip
    return endpoint


def setup(*endpoints: Endpoint, **options: object) -> tuple[ModelRegistry, ModelEntry, FakeClock]:
    clock = FakeClock()
    registry = ModelRegistry("m", clock=clock, **options)  # type: ignore[arg-type]
    entry = ModelEntry(id="m", name="M", endpoints=list(endpoints))
    registry.add(entry)
    return registry, entry, clock


# --------------------------------------------------------------------------- scoring


def test_score_adds_the_engines_own_queue() -> None:
    assert load_score(ep("a", 3)) == 3
    assert load_score(ep("a", 3, waiting=4)) == 7


def test_choose_prefers_the_shorter_engine_queue() -> None:
    # Same gateway load, but b's engine has a queue (other gateways' requests).
    a, b = ep("a", 2, waiting=0), ep("b", 1, waiting=5)
    assert choose([a, b], None) is a
    b.metrics = None  # unknown queue: only what this gateway has in flight counts
    assert choose([a, b], None) is b


def test_sticky_replica_kept_within_the_slack_only() -> None:
    best, sticky = ep("best", 0), ep("sticky", AFFINITY_SLACK)
    assert choose([best, sticky], "sticky") is sticky
    sticky.outstanding = AFFINITY_SLACK + 1
    assert choose([best, sticky], "sticky") is best
    assert choose([best, sticky], "gone") is best  # a replica no longer there


# --------------------------------------------------------------------------- affinity map


def test_affinity_map_is_a_bounded_lru() -> None:
    lru = AffinityMap(3)
    for key in "abc":
        lru.put(key, "e-" + key)
    assert lru.get("a") == "e-a"  # touched: now the most recent
    lru.put("d", "e-d")
    assert len(lru) == 3
    assert lru.get("b") is None, "the least recently used key is dropped"
    assert [lru.get(k) for k in "acd"] == ["e-a", "e-c", "e-d"]
    lru.put("a", "other")
    assert lru.get("a") == "other" and len(lru) == 3


def test_affinity_map_of_size_zero_remembers_nothing() -> None:
    lru = AffinityMap(0)
    lru.put("a", "x")
    assert lru.get("a") is None and len(lru) == 0


def test_pick_keeps_a_conversation_on_its_replica() -> None:
    a, b = ep("a"), ep("b")
    registry, entry, _ = setup(a, b)
    b.outstanding = 1
    assert registry.pick(entry, "conv-1") is a
    a.outstanding = 2  # busier now, but within the slack of b
    assert registry.pick(entry, "conv-1") is a
    assert registry.pick(entry) is b  # no key: plain least load
    assert registry.pick(entry, "conv-2") is b
    a.outstanding = 1 + AFFINITY_SLACK + 1
    assert registry.pick(entry, "conv-1") is b  # too busy: moved, and remembered
    a.outstanding = 0
    assert registry.pick(entry, "conv-1") is b


def test_pick_affinity_is_per_model_and_bounded() -> None:
    a, b = ep("a"), ep("b")
    registry, entry, _ = setup(a, b, affinity_sessions=2)
    other = ModelEntry(id="n", name="N", endpoints=[ep("c")])
    registry.add(other)
    for key in ("k1", "k2", "k3"):
        registry.pick(entry, key)
    registry.pick(other, "k1")
    assert len(registry._affinity) == 2  # noqa: SLF001 - the bound itself is the point


def test_pick_moves_off_an_unhealthy_sticky_replica() -> None:
    a, b = ep("a"), ep("b")
    registry, entry, _ = setup(a, b)
    assert registry.pick(entry, "conv") is a
    a.healthy = False
    assert registry.pick(entry, "conv") is b


def test_configure_routing_applies_settings() -> None:
    registry, entry, clock = setup(ep("a"), ep("b"))
    registry.configure_routing(circuit_failures=1, circuit_open_seconds=5, affinity_sessions=1)
    registry.record_failure(entry.endpoints[0], "boom")
    assert entry.endpoints[0].breaker.state(clock.now) == "open"
    assert registry.policy.open_seconds == 5


# --------------------------------------------------------------------------- circuits


def test_open_circuits_are_excluded_then_one_trial_goes_through() -> None:
    a, b = ep("a"), ep("b", outstanding=5)
    registry, entry, clock = setup(a, b, circuit_failures=2, circuit_open_seconds=10)
    registry.record_failure(a, "connect refused")
    assert a.healthy and registry.pick(entry) is a  # one failure: still in rotation
    registry.record_failure(a, "connect refused")
    assert not a.healthy and a.last_error == "connect refused"
    assert a.public(clock.now)["circuit"] == "open"
    assert registry.pick(entry) is b
    clock.now += 10
    assert a.public(clock.now)["circuit"] == "half_open"
    # Half-open: the (unhealthy) replica only gets traffic when nothing healthy is left.
    b.healthy = False
    assert registry.pick(entry) is a  # the trial
    assert registry.pick(entry) is b  # the trial is out: a takes no more meanwhile
    registry.record_success(a)
    assert a.healthy and a.public(clock.now)["circuit"] == "closed" and a.last_error is None


def test_no_usable_endpoint_is_503_with_retry_after() -> None:
    a = ep("a")
    registry, entry, _ = setup(a, circuit_failures=1, circuit_open_seconds=7)
    registry.record_failure(a, "boom")
    with pytest.raises(APIError) as info:
        registry.pick(entry)
    error = info.value
    assert (error.status_code, error.code) == (503, "engine_unavailable")
    assert "available" in error.message and error.headers == {"Retry-After": "7"}
    with pytest.raises(APIError):
        registry.ensure_available(entry)


def test_exclude_skips_replicas_already_tried() -> None:
    a, b = ep("a"), ep("b", outstanding=3)
    registry, entry, _ = setup(a, b)
    assert registry.pick(entry, exclude=["a"]) is b
    with pytest.raises(APIError):
        registry.pick(entry, exclude={"a", "b"})


# --------------------------------------------------------------------------- /v1 affinity key


def chat(*messages: tuple[str, str], **extra: object) -> dict[str, object]:
    return {"messages": [{"role": r, "content": c} for r, c in messages], **extra}


def test_v1_key_is_the_user_field_when_given() -> None:
    assert v1_affinity_key(chat(("user", "hi"), user="alice")) == "user:alice"
    assert v1_affinity_key(chat(("user", "hi"), user="")) != "user:"


def test_v1_key_hashes_the_stable_prefix_of_a_conversation() -> None:
    first = chat(("system", "be brief"), ("user", "hello"))
    later = chat(
        ("system", "be brief"), ("user", "hello"), ("assistant", "hi!"), ("user", "and now?")
    )
    key = v1_affinity_key(first)
    assert key is not None and key.startswith("prefix:")
    assert v1_affinity_key(later) == key  # the same conversation, further on
    assert v1_affinity_key(chat(("system", "be long"), ("user", "hello"))) != key
    assert v1_affinity_key(chat(("user", "hello"))) != key


def test_v1_key_for_completions_and_odd_bodies() -> None:
    assert v1_affinity_key({"prompt": "Once upon"}) == v1_affinity_key({"prompt": "Once upon"})
    assert v1_affinity_key({"prompt": ["a", "b"]}) is None
    assert v1_affinity_key({"messages": []}) is None
    assert v1_affinity_key({"messages": ["junk", {"role": "assistant", "content": "x"}]}) is None

"""ModelRegistry: resolving public ids, aliases and 'default'; picking endpoints."""

from __future__ import annotations

import pytest

from chatgate.engines.upstream.registry import (
    Endpoint,
    ModelEntry,
    ModelRegistry,
    normalise_base_url,
)
from chatgate.errors import APIError


def ep(name: str, outstanding: int = 0, healthy: bool = True) -> Endpoint:
    return Endpoint(
        name=name,
        base_url=f"http://{name}:8000/v1",
        upstream_model="upstream-" + name,
        outstanding=outstanding,
        healthy=healthy,
    )


def registry(default: str = "llama") -> ModelRegistry:
    reg = ModelRegistry(default)
    reg.add(ModelEntry(id="llama", name="Llama", endpoints=[ep("a")], aliases=["l3", "big"]))
    reg.add(ModelEntry(id="qwen", name="Qwen", endpoints=[ep("b")], aliases=["q"]))
    reg.add(ModelEntry(id="old", name="Old", endpoints=[ep("c")], enabled=False))
    return reg


def assert_not_found(reg: ModelRegistry, name: str | None) -> APIError:
    with pytest.raises(APIError) as info:
        reg.resolve(name)
    error = info.value
    assert (error.status_code, error.code, error.param) == (404, "model_not_found", "model")
    assert error.body()["error"]["type"] == "not_found_error"
    return error


def test_resolve_by_id_and_alias() -> None:
    reg = registry()
    assert reg.resolve("llama").id == "llama"
    assert reg.resolve("l3").id == "llama"
    assert reg.resolve("big").id == "llama"
    assert reg.resolve("q").id == "qwen"
    assert reg.resolve("qwen").id == "qwen"


@pytest.mark.parametrize("name", [None, "", "default"])
def test_default_resolves_to_the_default_model(name: str | None) -> None:
    assert registry("qwen").resolve(name).id == "qwen"
    assert registry("llama").resolve(name).id == "llama"


def test_a_default_alias_wins_over_the_default_setting() -> None:
    reg = registry("llama")
    reg.add(ModelEntry(id="mistral", name="M", endpoints=[ep("d")], aliases=["default"]))
    assert reg.resolve("default").id == "mistral"
    assert reg.resolve(None).id == "mistral"


def test_default_falls_back_to_the_first_model_when_unknown() -> None:
    assert registry("not-configured").resolve("default").id == "llama"


def test_unknown_model_is_404() -> None:
    error = assert_not_found(registry(), "gpt-4")
    assert "gpt-4" in error.message


def test_an_engine_url_is_not_a_model() -> None:
    assert_not_found(registry(), "http://a:8000/v1")
    assert_not_found(registry(), "upstream-a")  # the engine's own name is not public


def test_disabled_model_is_404_and_not_listed() -> None:
    reg = registry()
    assert_not_found(reg, "old")
    assert [m.id for m in reg.models()] == ["llama", "qwen"]
    reg.resolve("qwen").enabled = False
    assert_not_found(reg, "q")
    assert [m.id for m in reg.models()] == ["llama"]
    assert len(list(reg.endpoints())) == 3  # disabled models keep their endpoints


def test_disabled_default_model_is_404() -> None:
    reg = registry("old")
    assert_not_found(reg, "default")


def test_empty_registry_is_404() -> None:
    assert_not_found(ModelRegistry("x"), "default")
    assert_not_found(ModelRegistry("x"), "x")


def test_an_id_wins_over_another_models_alias() -> None:
    reg = ModelRegistry("a")
    reg.add(ModelEntry(id="a", name="A", endpoints=[ep("a")], aliases=["b"]))
    reg.add(ModelEntry(id="b", name="B", endpoints=[ep("b")]))
    assert reg.resolve("b").id == "b"
    assert reg.resolve("a").id == "a"


def test_pick_least_outstanding_healthy_endpoint() -> None:
    reg = ModelRegistry("m")
    busy, idle, sick = ep("busy", 5), ep("idle", 1), ep("sick", 0, healthy=False)
    entry = ModelEntry(id="m", name="M", endpoints=[busy, sick, idle])
    reg.add(entry)
    assert reg.pick(entry) is idle  # the unhealthy one is idler but skipped
    idle.outstanding = 9
    assert reg.pick(entry) is busy
    busy.healthy = idle.healthy = False
    assert reg.pick(entry) is sick  # nothing healthy: try the least loaded anyway
    sick.outstanding = 10
    assert reg.pick(entry) is busy


def test_pick_spreads_load_as_outstanding_changes() -> None:
    a, b = ep("a"), ep("b")
    entry = ModelEntry(id="m", name="M", endpoints=[a, b])
    reg = ModelRegistry("m")
    picks = []
    for _ in range(6):
        chosen = reg.pick(entry)
        chosen.outstanding += 1
        picks.append(chosen.name)
    assert picks.count("a") == picks.count("b") == 3


def test_pick_without_endpoints_is_503() -> None:
    entry = ModelEntry(id="m", name="M", endpoints=[])
    with pytest.raises(APIError) as info:
        ModelRegistry("m").pick(entry)
    assert (info.value.status_code, info.value.code) == (503, "engine_unavailable")


def test_public_view() -> None:
    entry = ModelEntry(
        id="m",
        name="M",
        endpoints=[ep("a", healthy=False), ep("b")],
        aliases=["mm"],
        default_params={"temperature": 0.7},
        context_length=4096,
    )
    assert entry.public() == {
        "id": "m",
        "name": "M",
        "aliases": ["mm"],
        "default_params": {"temperature": 0.7},
        "context_length": 4096,
        "healthy": True,
        "task": "generate",
    }
    entry.endpoints[1].healthy = False
    assert entry.public()["healthy"] is False
    assert "base_url" not in str(entry.public())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:8000", "http://h:8000/v1"),
        ("http://h:8000/", "http://h:8000/v1"),
        ("http://h:8000/v1", "http://h:8000/v1"),
        ("http://h:8000/v1/", "http://h:8000/v1"),
        ("https://h/prefix", "https://h/prefix/v1"),
    ],
)
def test_normalise_base_url(url: str, expected: str) -> None:
    assert normalise_base_url(url) == expected


def test_endpoint_root_url() -> None:
    assert ep("a").root_url == "http://a:8000"


def test_get_remove_and_all_models() -> None:
    reg = registry()
    assert reg.get("old") is not None and reg.get("old").enabled is False  # type: ignore[union-attr]
    assert reg.get("l3") is None  # ids only, no aliases
    assert [m.id for m in reg.all_models()] == ["llama", "qwen", "old"]
    removed = reg.remove("llama")
    assert removed is not None and removed.id == "llama"
    assert reg.remove("llama") is None
    assert_not_found(reg, "l3")  # its aliases went with it
    assert_not_found(reg, "big")
    assert reg.resolve("q").id == "qwen"  # other models' aliases stay
    reg.default_model = "qwen"
    assert reg.resolve(None).id == "qwen"


def test_a_draining_model_refuses_new_requests_but_is_still_found() -> None:
    reg = registry()
    entry = reg.resolve("llama")
    entry.endpoints[0].outstanding = 2  # in flight: they finish normally
    entry.draining = True
    with pytest.raises(APIError) as info:
        reg.resolve("l3")
    error = info.value
    assert (error.status_code, error.code) == (503, "model_switching")
    assert "being switched" in error.message and "llama" in error.message
    assert error.headers is not None and int(error.headers["Retry-After"]) > 0
    assert reg.lookup("llama") is entry and reg.get("llama") is entry
    assert entry.outstanding() == 2
    entry.draining = False
    assert reg.resolve("llama") is entry


def test_outstanding_sums_the_replicas() -> None:
    entry = ModelEntry(id="m", name="M", endpoints=[ep("a", 2), ep("b", 3)])
    assert entry.outstanding() == 5
    assert ModelEntry(id="n", name="N", endpoints=[]).outstanding() == 0
    assert entry.profile_id is None and entry.draining is False


def test_endpoint_admin_view() -> None:
    endpoint = ep("a", outstanding=1)
    assert endpoint.kind == "attached" and endpoint.timeouts is None
    assert endpoint.public(now=0) == {
        "name": "a",
        "base_url": "http://a:8000/v1",
        "kind": "attached",
        "healthy": True,
        "circuit": "closed",
        "outstanding": 1,
        "capacity": None,
        "last_error": None,
        "failure": None,
        "metrics": None,
        "consecutive_failures": 0,
    }


def test_a_failed_engine_is_not_routed_to_and_says_why() -> None:
    reg = ModelRegistry("m")
    failed, other = ep("a"), ep("b")
    reg.add(ModelEntry(id="m", name="M", endpoints=[failed, other]))
    failed.failure = "The engine a crashed 3 times within 300 s (last: killed by signal SIGSEGV)."
    assert reg.pick(reg.resolve("m")) is other  # the other replica serves
    other.failure = "The engine b crashed 3 times within 300 s. Run `chatgate doctor`."
    with pytest.raises(APIError) as excinfo:
        reg.pick(reg.resolve("m"))
    assert excinfo.value.code == "engine_failed" and excinfo.value.status_code == 503
    assert excinfo.value.message == (
        "The engine for 'm' has failed: The engine a crashed 3 times within 300 s"
        " (last: killed by signal SIGSEGV)."
    )

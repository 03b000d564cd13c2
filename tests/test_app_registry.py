"""Engines attached by settings: replicas, display names, /api/models."""

from __future__ import annotations

from pathlib import Path

from chatgate.engines.catalog.profiles import ProfileTimeouts, load_profiles
from chatgate.engines.upstream.endpoint import Timeouts
from chatgate.engines.upstream.registry import DEFAULT_ALIAS
from chatgate.lifespan import build_registry
from chatgate.settings import Settings
from tests.helpers import Gateway


def test_same_name_twice_makes_replicas(tmp_path: Path, clean_env: None) -> None:
    settings = Settings(
        data_dir=tmp_path,
        engines=["smollm2-135m=http://127.0.0.1:9001", "smollm2-135m=http://127.0.0.1:9002/v1",
                 "other=http://10.0.0.5:8000/"],
        default_model="smollm2-135m",
    )
    registry = build_registry(settings, load_profiles())
    small = registry.resolve("smollm2-135m")
    # Named like a profile: the profile's display name, aliases and context length.
    assert small.name == "SmolLM2-135M-Instruct" and small.context_length == 8192
    assert small.profile_id == "smollm2-135m" and registry.resolve("smollm2") is small
    assert [ep.base_url for ep in small.endpoints] == [
        "http://127.0.0.1:9001/v1", "http://127.0.0.1:9002/v1"
    ]
    assert registry.resolve(DEFAULT_ALIAS) is small and registry.resolve(None) is small
    other = registry.resolve("other")
    assert other.endpoints[0].base_url == "http://10.0.0.5:8000/v1"
    assert other.name == "other" and other.profile_id is None


async def test_api_models_lists_usable_models(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.get("/api/models", headers=account.headers)
        anonymous = await client.get("/api/models")
    body = response.json()
    assert body["default"] == "fake-model"
    assert [m["id"] for m in body["models"]] == ["fake-model"]
    assert body["models"][0]["healthy"] is True
    assert anonymous.status_code == 401


def test_profile_timeouts_apply_to_its_attached_engines(tmp_path: Path, clean_env: None) -> None:
    settings = Settings(
        data_dir=tmp_path,
        engines=["smollm2-135m=http://127.0.0.1:9001", "other=http://127.0.0.1:9002"],
        engine_idle_timeout=30.0,
    )
    profiles = load_profiles()
    slow = profiles["smollm2-135m"].model_copy(
        update={"timeouts": ProfileTimeouts(first_token=900.0)}
    )
    registry = build_registry(settings, {**profiles, "smollm2-135m": slow})
    (endpoint,) = registry.resolve("smollm2-135m").endpoints
    assert endpoint.timeouts == Timeouts(settings.engine_connect_timeout, 900.0, 30.0)
    assert registry.resolve("other").endpoints[0].timeouts is None  # the client's defaults

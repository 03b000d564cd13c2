"""Admin API for models, engines and hardware, against a running gateway (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from chatgate.db.models import ModelSetting
from tests.helpers import Account, Gateway

DEEPSEEK = "deepseek-r1-distill-qwen-14b"


async def get(gateway: Gateway, account: Account, path: str, status: int = 200) -> Any:
    async with gateway.client() as client:
        response = await client.get(path, headers=account.headers)
    assert response.status_code == status, response.text
    return response.json()


async def post(gateway: Gateway, account: Account, path: str, status: int = 200) -> Any:
    async with gateway.client() as client:
        response = await client.post(path, headers=account.headers)
    assert response.status_code == status, response.text
    return response.json()


async def test_admin_only(gateway: Gateway) -> None:
    user = await gateway.account()
    for path in ("/api/admin/hardware", "/api/admin/models", "/api/admin/engines"):
        body = await get(gateway, user, path, 403)
        assert body["error"]["type"]


async def test_hardware_answers_cleanly_without_a_gpu(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    body = await get(gateway, admin, "/api/admin/hardware")
    assert set(body) == {"available", "message", "devices"}
    if not body["available"]:
        assert body["devices"] == [] and "GPU" in body["message"]


async def test_models_list_profiles_and_attached_engines(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    body = await get(gateway, admin, "/api/admin/models")
    models = {m["id"]: m for m in body["models"]}
    assert len([m for m in body["models"] if m["has_profile"]]) >= 10
    attached = models["fake-model"]
    assert attached["registered"] and not attached["has_profile"]
    assert attached["state"] == "attached" and attached["enabled"]
    assert attached["endpoints"][0]["kind"] == "attached"
    deepseek = models[DEEPSEEK]
    assert deepseek["engine"] == "vllm" and not deepseek["registered"]
    assert deepseek["state"] == "not_running" and deepseek["verdict"]["profile_id"] == DEEPSEEK
    assert body["can_switch"] and body["default_model"] == "fake-model"
    assert body["hardware"]["gpus"] >= 0


async def test_compatibility_check_on_given_hardware(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    base = f"/api/admin/models/{DEEPSEEK}/check"
    two = await get(gateway, admin, f"{base}?gpus=2&gpu_memory=24GiB")
    assert two["verdict"] == "fits_with_tp" and two["tensor_parallel_size"] == 2
    assert "--tensor-parallel-size 2" in " ".join(two["suggested_args"])
    one = await get(gateway, admin, f"{base}?gpus=1&gpu_memory=24GiB")
    assert one["verdict"] == "does_not_fit" and one["alternatives"]
    bad = await get(gateway, admin, f"{base}?gpus=1&gpu_memory=lots", 400)
    assert bad["error"]["code"] == "invalid_value"
    missing = await get(gateway, admin, "/api/admin/models/nope/check", 404)
    assert missing["error"]["code"] == "profile_not_found"


async def test_a_length_beyond_the_models_context_is_a_400(gateway: Gateway) -> None:
    """It was an uncaught ProfileError (500): the query's own bounds cannot know it."""
    admin = await gateway.account("admin")
    path = "/api/admin/models/qwen2.5-7b-instruct/check?max_model_len=125702"  # 32k context
    error = (await get(gateway, admin, path, 400))["error"]
    assert error["param"] == "max_model_len" and "125702" in error["message"]


async def test_engines_show_routing_state(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    body = await get(gateway, admin, "/api/admin/engines")
    engine = next(e for e in body["engines"] if e["model_id"] == "fake-model")
    assert engine["state"] == "attached" and engine["circuit"] == "closed"
    assert engine["base_url"].endswith("/v1") and engine["healthy"] is True
    assert engine["name"].startswith("fake-model@")


async def test_disable_and_enable_a_model(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    user = await gateway.account()
    try:
        body = await post(gateway, admin, "/api/admin/models/fake-model/disable")
        assert body["enabled"] is False
        listed = await get(gateway, user, "/api/models")
        assert "fake-model" not in [m["id"] for m in listed["models"]]
        async with gateway.state.sessionmaker() as db:
            row = await db.scalar(select(ModelSetting).where(ModelSetting.model_id == "fake-model"))
        assert row is not None and row.enabled is False
    finally:
        body = await post(gateway, admin, "/api/admin/models/fake-model/enable")
    assert body["enabled"] is True
    listed = await get(gateway, user, "/api/models")
    assert "fake-model" in [m["id"] for m in listed["models"]]
    await post(gateway, admin, "/api/admin/models/ghost/disable", 404)


async def test_no_switch_yet_and_refusals(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    assert await get(gateway, admin, "/api/admin/models/switch") == {"switch": None}
    unknown = await post(gateway, admin, "/api/admin/models/nope/switch", 404)
    assert unknown["error"]["code"] == "profile_not_found"

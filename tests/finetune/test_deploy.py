"""Fine-tuned versions as model ids (finetune/deploy.py): parsing, the applied list, and,
through a gateway on real sockets with the fake engine, the per-request adapter selection
each replica receives (llama.cpp ``lora``; vLLM ``model``), the usage rows of the
version's own model id, and the admin API (undeploy, rollback, failures). The real engine:
test_deploy_e2e.py; a fleet: test_deploy_fleet_e2e.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.engines.catalog.profiles import load_profiles
from chatgate.engines.runtime.embedded import EngineSetupError
from chatgate.engines.runtime.launch import plan_launch
from chatgate.engines.upstream.registry import BASE_ONLY, AdapterRoute, ModelEntry
from chatgate.errors import APIError
from chatgate.finetune import deploy, desired
from chatgate.finetune.deploy import Deployment, VersionRef
from chatgate.settings import Settings
from tests.conftest import _migrated_url, gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.finetune.deploy_fakes import fake_trainer
from tests.helpers import missing, start_gateway

BASES = ["smollm2-135m", "smollm2-135m-long", "qwen2.5-7b"]


def version(name: str, number: int, base: str = "smollm2-135m") -> Deployment:
    return Deployment(
        f"{base}:{name}@{number}", base, name, number, f"/a/{name}/{number}/adapter.gguf", None
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("smollm2-135m:zanthia@3", VersionRef("smollm2-135m", "zanthia", "3")),
        ("smollm2-135m:zanthia@champion", VersionRef("smollm2-135m", "zanthia", "champion")),
        ("smollm2-135m-zanthia@2", VersionRef("smollm2-135m", "zanthia", "2")),
        # the longest base that prefixes a registered name wins
        ("smollm2-135m-long-faq@1", VersionRef("smollm2-135m-long", "faq", "1")),
    ],
)
def test_specs_name_a_base_a_fine_tune_and_a_version(spec: str, expected: VersionRef) -> None:
    ref = deploy.parse_spec(spec, BASES)
    assert ref == expected
    assert ref.registered == f"{expected.base}-{expected.name}"


@pytest.mark.parametrize(
    "spec", ["zanthia@3", "smollm2-135m:zanthia", "other-zanthia@1", ":x@1", "a:b@1@2", ""]
)
def test_other_specs_are_a_400_naming_model(spec: str) -> None:
    with pytest.raises(APIError) as caught:
        deploy.parse_spec(spec, BASES)
    assert caught.value.status_code == 400 and caught.value.param == "model"


def test_only_numbered_version_ids_parse_as_model_ids() -> None:
    assert deploy.parse_model_id("smollm2-135m:zanthia@3") == VersionRef(
        "smollm2-135m", "zanthia", "3"
    )
    for other in ("smollm2-135m", "smollm2-135m:zanthia@champion", "gpt-4o@1"):
        assert deploy.parse_model_id(other) is None


def test_the_deployed_list_survives_and_keeps_the_adapter_order(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert deploy.load(settings) == []
    listed = deploy.with_deployment([version("zanthia", 1)], version("faq", 1))
    listed = deploy.with_deployment(listed, version("zanthia", 2))
    listed = deploy.with_deployment(listed, version("zanthia", 1))  # again: same place
    listed = deploy.with_deployment(listed, version("other", 1, base="qwen2.5-7b"))
    deploy.save(settings, listed)
    assert deploy.load(settings) == listed
    assert [p.name for p in deploy.lora_files(settings, "smollm2-135m")] == ["adapter.gguf"] * 3
    assert [str(p) for p in deploy.lora_files(settings, "smollm2-135m")] == [
        "/a/zanthia/1/adapter.gguf",
        "/a/faq/1/adapter.gguf",
        "/a/zanthia/2/adapter.gguf",
    ]


def test_routes_rewrite_the_engine_request() -> None:
    body = {"model": "smollm2-135m", "messages": []}
    llama = AdapterRoute("llamacpp", lora_id=2, lora_name="smollm2-135m:zanthia@3")
    assert llama.apply(body) == {**body, "lora": [{"id": 2, "scale": 1.0}]}
    base = AdapterRoute("llamacpp", lora_id=BASE_ONLY)
    assert base.apply(body) == {**body, "lora": [{"id": 0, "scale": 0.0}]}
    vllm = AdapterRoute("vllm", lora_id=0, lora_name="smollm2-135m:zanthia@3")
    assert vllm.apply(body) == {**body, "model": "smollm2-135m:zanthia@3"}
    plain = ModelEntry(id="m", name="m", endpoints=[])
    assert plain.engine_body(body) is body


async def chat(client: Any, key: str, model: str) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    headers = {"Authorization": f"Bearer {key}"}
    response = await client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    answer["request_id"] = response.headers["x-request-id"]
    return answer


async def seed(settings: Settings, *deployed: Deployment) -> None:
    """Versions the fleet serves (the database) and this host's engine was started with
    (its applied list): an attached engine cannot be restarted by chatgate."""
    engine = make_engine(settings.resolved_database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            for d in deployed:
                await desired.put(
                    session, VersionRef(d.base, d.name, str(d.version)), d.version, None
                )
    finally:
        await engine.dispose()
    deploy.save(settings, list(deployed))


async def test_versions_reach_the_base_engine_with_their_adapter(
    tmp_path: Path, upstream: FakeUpstream, fast_passwords: None
) -> None:
    async for url in _migrated_url("sqlite", tmp_path):
        settings = gateway_settings(
            tmp_path, url, upstream, engines=[f"smollm2-135m={upstream.url}"],
            default_model="smollm2-135m",
        )  # fmt: skip
        await seed(settings, version("faq", 1), version("zanthia", 3))
        async with start_gateway(settings, upstream) as gw:
            admin = await gw.account("admin")
            async with gw.client() as client:
                listed = (await client.get("/v1/models", headers=admin.key_headers)).json()
                ids = {m["id"] for m in listed["data"]}
                assert {"smollm2-135m:faq@1", "smollm2-135m:zanthia@3"} <= ids
                tuned = await chat(client, admin.api_key, "smollm2-135m:zanthia@3")
                base = await chat(client, admin.api_key, "smollm2-135m")
                deployments = await client.get(
                    "/api/admin/models/deployments", headers=admin.headers
                )
                bad = await client.post(
                    "/api/admin/models/deploy", json={"model": "zanthia"}, headers=admin.headers
                )
                unserved = await client.post(
                    "/api/admin/models/deploy",
                    json={"model": "qwen2.5-7b:x@1"},
                    headers=admin.headers,
                )
                user = await gw.account("user")
                refused = await client.post(
                    "/api/admin/models/deploy", json={"model": "a:b@1"}, headers=user.headers
                )
                split_body = {"base": "smollm2-135m", "to": "smollm2-135m:faq@1", "percent": 10}
                splits = await client.post(
                    "/api/admin/models/splits", json=split_body, headers=admin.headers
                )
                listed_splits = await client.get("/api/admin/models/splits", headers=admin.headers)
                usage = await client.get(
                    "/api/usage/summary", params={"group_by": "model"}, headers=admin.headers
                )
        assert tuned["model"] == "smollm2-135m:zanthia@3" and base["model"] == "smollm2-135m"
        sent = [upstream.by_request_id(a["request_id"]) for a in (tuned, base)]
        # the base engine's own name for both (the fake engine calls itself fake-model)
        assert sent[0].payload["model"] == sent[1].payload["model"] == upstream.model
        assert sent[0].payload["lora"] == [{"id": 1, "scale": 1.0}]  # zanthia: 2nd --lora
        assert sent[1].payload["lora"] == [{"id": 0, "scale": 0.0}]  # base: no adapter
        rows = deployments.json()["deployments"]
        assert [(d["model_id"], d["served"], d["error"]) for d in rows] == [
            ("smollm2-135m:faq@1", True, None),
            ("smollm2-135m:zanthia@3", True, None),
        ]
        assert rows[1]["gguf"] == "/a/zanthia/3/adapter.gguf"  # this host's copy
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "model"
        assert unserved.status_code == 409, unserved.text
        assert refused.status_code == 403
        assert splits.status_code == 200, splits.text
        assert splits.json() == listed_splits.json()
        (shown,) = listed_splits.json()["splits"]
        assert (shown["to"], shown["percent"]) == ("smollm2-135m:faq@1", 10)
        assert [r["model"] for r in shown["rates"]] == ["smollm2-135m", "smollm2-135m:faq@1"]
        groups = {g["key"]: g["requests"] for g in usage.json()["groups"]}
        assert groups["smollm2-135m:zanthia@3"] == 1 and groups["smollm2-135m"] == 1


async def test_undeploy_rollback_to_base_and_failures_through_the_api(
    tmp_path: Path, upstream: FakeUpstream, fast_passwords: None
) -> None:
    """Undeploy (and its split), a deploy that cannot be served answered 502 with the
    recorded reason, rollback with no earlier version (409 naming to_base), rollback
    to_base (the base alone), and an ordinary rollback. The registry tool is a stand-in
    (deploy_fakes.py); the engine is attached, so only the versions it was started with
    can be served."""
    async for url in _migrated_url("sqlite", tmp_path):
        settings = gateway_settings(
            tmp_path, url, upstream, engines=[f"smollm2-135m={upstream.url}"],
            default_model="smollm2-135m", **fake_trainer(tmp_path),
        )  # fmt: skip
        await seed(settings, version("faq", 1), version("zanthia", 3))
        async with start_gateway(settings, upstream) as gw:
            admin = await gw.account("admin")
            async with gw.client() as client:
                calls = AdminCalls(client, admin.headers)
                split_body = {"base": BASE, "to": FAQ, "percent": 50}
                await calls.ok("POST", "/api/admin/models/splits", split_body)
                failed = await calls.send("POST", DEPLOY, {"model": f"{BASE}:zanthia@4"})
                listed = await calls.ok("GET", "/api/admin/models/deployments")
                left = await calls.ok("DELETE", f"/api/admin/models/deployments/{FAQ}")
                unknown = await calls.send("DELETE", "/api/admin/models/deployments/x:y@1")
                splits = await calls.ok("GET", "/api/admin/models/splits")
                asked = {"model": FAQ, "messages": [{"role": "user", "content": "hi"}]}
                gone = await client.post(
                    "/v1/chat/completions", json=asked, headers=admin.key_headers
                )
                alone = await calls.send("POST", ROLLBACK, {"name": f"{BASE}:solo"})
                to_base = {"name": f"{BASE}:zanthia", "to_base": True}
                based = await calls.ok("POST", ROLLBACK, to_base)
                models = await client.get("/v1/models", headers=admin.key_headers)
                base = await chat(client, admin.api_key, BASE)
                back = await calls.ok("POST", ROLLBACK, {"name": f"{BASE}:zanthia"})
                tuned = await chat(client, admin.api_key, f"{BASE}:zanthia@3")
        assert failed.status_code == 502 and failed.json()["error"]["code"] == "deploy_failed"
        assert "not run by chatgate" in failed.json()["error"]["message"]
        shown = {d["model_id"]: (d["served"], d["error"]) for d in listed["deployments"]}
        assert shown["smollm2-135m:zanthia@4"][0] is False
        assert "not run by chatgate" in str(shown["smollm2-135m:zanthia@4"][1])
        assert [d["model_id"] for d in left["deployments"]] == [
            "smollm2-135m:zanthia@3", "smollm2-135m:zanthia@4",
        ]  # fmt: skip
        assert unknown.status_code == 404
        assert splits["splits"] == []  # the split to the undeployed version went with it
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "model_not_found"
        assert alone.status_code == 409 and "to_base" in alone.json()["error"]["message"]
        assert (based["model_id"], based["version"]) == ("smollm2-135m", None)
        assert based["undeployed"] == ["smollm2-135m:zanthia@3", "smollm2-135m:zanthia@4"]
        assert not any(m["id"].startswith(f"{BASE}:") for m in models.json()["data"])
        sent = upstream.by_request_id(base["request_id"]).payload
        assert sent["lora"] == [{"id": 0, "scale": 0.0}]  # the engine still has them loaded
        assert (back["model_id"], back["version"]) == ("smollm2-135m:zanthia@3", 3)
        assert upstream.by_request_id(tuned["request_id"]).payload["lora"] == [
            {"id": 1, "scale": 1.0}
        ]


BASE = "smollm2-135m"
FAQ = f"{BASE}:faq@1"
DEPLOY = "/api/admin/models/deploy"
ROLLBACK = "/api/admin/models/rollback"


class AdminCalls:
    def __init__(self, client: Any, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self.client.request(method, path, json=body, headers=self.headers)

    async def ok(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = await self.send(method, path, body)
        assert response.status_code == 200, (path, response.text)
        return response.json()


def test_engines_start_with_the_deployed_adapters(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    profiles = load_profiles(settings.profiles_dir)
    try:
        llama = plan_launch(profiles["smollm2-135m"], settings)
    except EngineSetupError as exc:
        missing(str(exc))
    vllm = plan_launch(profiles["qwen2.5-7b-instruct"], settings)
    assert "--lora" not in llama.command(9000) and "--enable-lora" not in vllm.command(9000)
    tuned = Deployment("qwen2.5-7b-instruct:faq@2", "qwen2.5-7b-instruct", "faq", 2, "/g", "/d")
    deploy.save(settings, [version("faq", 1), version("zanthia", 3), tuned])
    argv = llama.command(9000)  # read at every start: no new plan needed
    at = argv.index("--lora-init-without-apply")
    assert argv[at + 1 :] == [
        "--lora", "/a/faq/1/adapter.gguf", "--lora", "/a/zanthia/3/adapter.gguf",
    ]  # fmt: skip
    argv = vllm.command(9000)
    assert argv[argv.index("--enable-lora") :] == [
        "--enable-lora", "--max-lora-rank", "16",
        "--lora-modules", "qwen2.5-7b-instruct:faq@2=/d",
    ]  # fmt: skip

"""A deploy on vLLM loads the adapter at runtime (``POST /v1/load_lora_adapter``) on every
replica, with no restart, and the version's requests then name it as their ``model``.
The registry script is a stand-in (tools/train/registry.py needs .venv-train and MLflow:
test_deploy_e2e.py); the engine is a small aiohttp server on a real socket."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from chatgate.engines.endpoint import Endpoint
from chatgate.engines.manager import EngineManager
from chatgate.engines.profiles import load_profiles
from chatgate.engines.registry import AdapterRoute, ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.finetune import deploy
from chatgate.finetune.rollout import Rollout
from chatgate.settings import Settings
from tests.helpers import free_port

BASE = "smollm2-135m-vllm"
FAKE_REGISTRY = """
import json, sys
args = sys.argv[sys.argv.index("resolve") + 1:]
if args[1] == "9":
    print(json.dumps({"error": "no version '9' of the registered model"}))
    sys.exit(1)
print(json.dumps({"name": args[0], "version": 4, "gguf": "/x/adapter.gguf",
                  "adapter_dir": "/x/adapter", "aliases": ["champion"]}))
"""


class FakeVllm:
    def __init__(self) -> None:
        self.loads: list[dict[str, Any]] = []
        self.refuse = False

    async def load(self, request: web.Request) -> web.Response:
        if self.refuse:
            return web.Response(status=400, text="LoRA is not enabled")
        self.loads.append(await request.json())
        return web.Response(text="Success")


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[tuple[FakeVllm, str]]:
    fake = FakeVllm()
    app = web.Application()
    app.router.add_post("/v1/load_lora_adapter", fake.load)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


def rollout(tmp_path: Path, base_url: str) -> Rollout:
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "finetune.py").write_text("")
    (tools / "registry.py").write_text(FAKE_REGISTRY)
    settings = Settings(
        data_dir=tmp_path, train_python=sys.executable, train_script=tools / "finetune.py"
    )
    registry = ModelRegistry(BASE)
    endpoint = Endpoint(name="vllm-1", base_url=base_url, upstream_model=BASE)
    registry.add(ModelEntry(id=BASE, name=BASE, endpoints=[endpoint]))
    profiles = load_profiles(settings.profiles_dir)
    return Rollout(settings, EngineManager(settings, registry, profiles))


async def test_a_vllm_deploy_loads_the_adapter_without_a_restart(
    tmp_path: Path, engine: tuple[FakeVllm, str]
) -> None:
    fake, base_url = engine
    deployer = rollout(tmp_path, base_url)
    deployed = await deployer.deploy(f"{BASE}:faq@champion")
    version_id = f"{BASE}:faq@4"
    assert deployed.model_id == version_id
    assert fake.loads == [{"lora_name": version_id, "lora_path": "/x/adapter"}]
    entry = deployer.manager.registry.resolve(version_id)
    assert entry.adapter == AdapterRoute("vllm", lora_id=0, lora_name=version_id)
    assert entry.engine_body({"model": BASE})["model"] == version_id
    base = deployer.manager.registry.resolve(BASE)
    assert base.engine_body({"model": BASE}) == {"model": BASE}  # vLLM: nothing to add
    saved = json.loads(deploy.deployments_file(deployer.settings).read_text())
    assert [d["model_id"] for d in saved] == [version_id]

    with pytest.raises(APIError) as missing_version:
        await deployer.deploy(f"{BASE}:faq@9")
    assert missing_version.value.status_code == 404
    fake.refuse = True
    with pytest.raises(APIError) as refused:
        await deployer.deploy(f"{BASE}:other@1")
    assert refused.value.code == "adapter_load_failed"
    # a failed deploy leaves the list as it was
    assert [d.model_id for d in deploy.load(deployer.settings)] == [version_id]

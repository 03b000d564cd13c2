"""A deploy on vLLM loads the adapter at runtime (``POST /v1/load_lora_adapter``) on every
replica, with no restart, and the version's requests then name it as their ``model``; an
undeploy unloads it; a refusal is recorded on the desired row. The engine is attached (an
``--engine`` URL), so each gateway's reconciler loads it itself. The registry script is a
stand-in (tools/train/registry.py needs .venv-train and MLflow: test_deploy_e2e.py) run as
a real subprocess; the engine is a small aiohttp server on a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp import web

from chatgate.engines.catalog.profiles import load_profiles
from chatgate.engines.runtime.manager import EngineManager
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.registry import AdapterRoute, ModelEntry, ModelRegistry
from chatgate.finetune import deploy
from chatgate.finetune.reconcile import Reconciler
from chatgate.finetune.split import SplitTable
from chatgate.settings import Settings
from tests.finetune.deploy_fakes import FakeSource, fake_trainer, wanted
from tests.helpers import free_port

BASE = "qwen2.5-7b-instruct"  # a vLLM profile


class FakeVllm:
    def __init__(self) -> None:
        self.loads: list[dict[str, Any]] = []
        self.unloads: list[dict[str, Any]] = []
        self.refuse = False

    async def load(self, request: web.Request) -> web.Response:
        if self.refuse:
            return web.Response(status=400, text="LoRA is not enabled")
        self.loads.append(await request.json())
        return web.Response(text="Success")

    async def unload(self, request: web.Request) -> web.Response:
        self.unloads.append(await request.json())
        return web.Response(text="Success")


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[tuple[FakeVllm, str]]:
    fake = FakeVllm()
    app = web.Application()
    app.router.add_post("/v1/load_lora_adapter", fake.load)
    app.router.add_post("/v1/unload_lora_adapter", fake.unload)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield fake, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


def reconciler(tmp_path: Path, base_url: str, source: FakeSource) -> Reconciler:
    settings = Settings(data_dir=tmp_path, **fake_trainer(tmp_path))
    registry = ModelRegistry(BASE)
    endpoint = Endpoint(name="vllm-1", base_url=base_url, upstream_model=BASE)
    registry.add(ModelEntry(id=BASE, name=BASE, endpoints=[endpoint]))
    manager = EngineManager(settings, registry, load_profiles(settings.profiles_dir))
    return Reconciler(settings, manager, source, SplitTable())


async def test_a_vllm_deploy_loads_the_adapter_without_a_restart(
    tmp_path: Path, engine: tuple[FakeVllm, str]
) -> None:
    fake, base_url = engine
    version_id = f"{BASE}:faq@4"
    source = FakeSource(wanted(version_id))
    deployer = reconciler(tmp_path, base_url, source)
    registry = deployer.manager.registry
    await deployer.tick()
    adapter = f"{tmp_path}/adapters/{BASE}-faq/4/adapter"
    assert fake.loads == [{"lora_name": version_id, "lora_path": adapter}]
    entry = registry.resolve(version_id)
    assert entry.adapter == AdapterRoute("vllm", lora_id=0, lora_name=version_id)
    assert entry.engine_body({"model": BASE})["model"] == version_id
    base = registry.resolve(BASE)
    assert base.engine_body({"model": BASE}) == {"model": BASE}  # vLLM: nothing to add
    assert deploy.load(deployer.settings) == []  # an attached engine: nothing for a restart
    await deployer.tick()
    assert len(fake.loads) == 1

    fake.refuse = True
    refused = wanted(f"{BASE}:other@1")
    source.rows.append(refused)
    await deployer.tick()
    ((model_id, request_id, error),) = source.failures
    assert (model_id, request_id) == (refused.model_id, refused.request_id)
    assert "did not load the adapter: LoRA is not enabled" in error
    assert registry.get(refused.model_id) is None and registry.get(version_id) is not None

    source.rows = []  # undeployed: unloaded, no longer routed
    await deployer.tick()
    assert fake.unloads == [{"lora_name": version_id}]
    assert registry.get(version_id) is None

"""Embedding-only engines (``task: embed``): vLLM started as a pooling model cannot
generate, so it is proven by one embedding instead of a token — by its supervisor before
it counts as ready, by the monitor while an attached one runs — and the registry refuses
generation for its model (a 400 naming ``model``, never relayed).

The supervisor tests run tests/engines/fake_pooling_engine.py (a process that embeds and
answers 404 to every generation, as a pooling vLLM does); the monitor tests the in-process
fake engine with ``embedding_only``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import ValidationError

from chatgate.engines.catalog.profiles import EmbeddingsSpec, ModelProfile, load_profiles
from chatgate.engines.runtime.launch import liveness_for, plan_launch
from chatgate.engines.runtime.liveness import EngineProbe, Liveness
from chatgate.engines.runtime.supervisor import EngineSupervisor
from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint, Task, Timeouts
from chatgate.engines.upstream.health import result_error
from chatgate.engines.upstream.monitor import EngineMonitor
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.observability.metrics import Metrics
from chatgate.settings import Settings
from tests.fakes.upstream import FakeUpstream

FAKE_POOLING = Path(__file__).parent.parent / "fake_pooling_engine.py"
SPEC = EmbeddingsSpec(dimensions=8, max_input_tokens=16)

Supervise = Callable[..., EngineSupervisor]


@pytest.fixture
def supervise(tmp_path: Path) -> Iterator[Supervise]:
    """Supervisors of the fake pooling engine, always stopped afterwards."""
    created: list[EngineSupervisor] = []

    def build(task: Task, *options: str, **kwargs: Any) -> EngineSupervisor:
        def command(port: int) -> list[str]:
            return [sys.executable, str(FAKE_POOLING), "--port", str(port), *options]

        probe = EngineProbe("pooling", task=task)
        supervisor = EngineSupervisor(
            "pooling", command, run_dir=tmp_path / "run", log_dir=tmp_path / "logs",
            backoff_initial=0.05, backoff_max=0.2, liveness=Liveness(probe=probe), **kwargs,
        )  # fmt: skip
        created.append(supervisor)
        return supervisor

    try:
        yield build
    finally:
        for supervisor in created:
            supervisor.stop(timeout=2.0)


# --------------------------------------------------------------------------- supervisor


def test_a_pooling_engine_is_ready_once_it_embedded(supervise: Supervise) -> None:
    supervisor = supervise("embed")
    supervisor.start()
    assert supervisor.wait_ready(60), supervisor.status()
    assert supervisor.status().state == "ready"


def test_a_token_probe_never_readies_a_pooling_engine(supervise: Supervise) -> None:
    """Why ``task: embed`` exists: asked for a token, a pooling engine answers 404 forever."""
    supervisor = supervise("generate", ready_timeout=1.0, max_quick_failures=1)
    supervisor.start()
    assert supervisor.wait_ready(60) is False
    status = supervisor.status()
    assert status.state == "failed" and "not ready within" in (status.last_error or "")


def test_vectors_that_are_not_numbers_prove_nothing(supervise: Supervise) -> None:
    supervisor = supervise("embed", "--bad-vectors", ready_timeout=1.0, max_quick_failures=1)
    supervisor.start()
    assert supervisor.wait_ready(60) is False
    assert supervisor.status().state == "failed"


def test_what_counts_as_a_real_result() -> None:
    assert result_error("embed", {"data": [{"embedding": [0.1, -2, 3e-5]}]}) is None
    assert result_error("embed", {"data": []}) == "a 1-input embedding returned no vector"
    assert result_error("embed", {"data": [{"embedding": []}]}) is not None
    assert result_error("embed", {"data": [{"embedding": [True, 0.5]}]}) is not None
    assert result_error("embed", {"choices": [{"text": "Hi"}]}) is not None
    assert result_error("generate", {"choices": [{"text": "Hi"}]}) is None
    assert result_error("generate", {"data": [{"embedding": [0.1]}]}) is not None


# --------------------------------------------------------------------------- monitor


@pytest_asyncio.fixture
async def client() -> AsyncIterator[EngineClient]:
    engine_client = EngineClient(Timeouts(connect=1.0, first_token=2.0, idle=2.0))
    await engine_client.start()
    yield engine_client
    await engine_client.close()


@pytest_asyncio.fixture
async def pooling() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream(embedding_only=True)
    await upstream.start()
    yield upstream
    await upstream.stop()


def monitored(client: EngineClient, url: str, task: Task) -> tuple[EngineMonitor, Endpoint]:
    endpoint = Endpoint(name="pool", base_url=url + "/v1", upstream_model="fake-model")
    registry = ModelRegistry("m")
    registry.add(ModelEntry(id="m", name="M", endpoints=[endpoint], task=task, embeddings=SPEC))
    return EngineMonitor(client, registry, Metrics(), probe_interval=0.0), endpoint


async def test_the_monitor_proves_an_attached_pooling_engine_by_an_embedding(
    client: EngineClient, pooling: FakeUpstream
) -> None:
    monitor, endpoint = monitored(client, pooling.url, "embed")
    assert endpoint.task == "embed"  # the registry told the endpoint how to probe it
    pooling.forced["status"] = "500"
    await monitor.check_all()
    assert not endpoint.healthy
    assert endpoint.last_error == "a 1-input embedding failed: HTTP 500"
    pooling.forced.clear()
    await monitor.check_all()
    assert endpoint.healthy and endpoint.probe_error is None and endpoint.last_error is None
    assert pooling.probes == 2 and pooling.requests == []  # no generation was asked for


async def test_a_token_probe_fails_on_a_pooling_engine(
    client: EngineClient, pooling: FakeUpstream
) -> None:
    monitor, endpoint = monitored(client, pooling.url, "generate")
    await monitor.check_all()
    assert not endpoint.healthy
    assert endpoint.last_error == "a 1-token generation failed: HTTP 404"


# --------------------------------------------------------------------------- registry


def entry(model_id: str, task: Task, **extra: Any) -> ModelEntry:
    endpoint = Endpoint(name=model_id, base_url="http://127.0.0.1:9/v1", upstream_model=model_id)
    embeddings = SPEC if task == "embed" else None
    return ModelEntry(id=model_id, name=model_id, endpoints=[endpoint], task=task,
                      embeddings=embeddings, **extra)  # fmt: skip


def test_generation_from_an_embedding_only_model_is_a_400_naming_model() -> None:
    registry = ModelRegistry("chat")
    registry.add(entry("chat", "generate"))
    registry.add(entry("embedder", "embed", aliases=["vectors"]))
    for name in ("embedder", "vectors"):
        with pytest.raises(APIError) as refused:
            registry.resolve(name)
        error = refused.value.body()["error"]
        assert refused.value.status_code == 400
        assert (error["param"], error["code"]) == ("model", "model_not_supported")
        assert "does not support chat completions" in error["message"]
    assert registry.resolve_embeddings("vectors").id == "embedder"
    assert registry.resolve("chat").id == "chat"
    assert [m.id for m in registry.chat_models()] == ["chat"]
    assert [m.id for m in registry.models()] == ["chat", "embedder"]  # /v1/models: all
    assert registry.lookup("embedder").public()["task"] == "embed"
    assert registry.lookup("chat").public()["task"] == "generate"


def test_the_fallback_default_is_a_model_one_can_chat_with() -> None:
    registry = ModelRegistry("not-served")
    registry.add(entry("embedder", "embed"))
    registry.add(entry("chat", "generate"))
    assert registry.lookup(None).id == "chat"
    only = ModelRegistry("not-served")
    only.add(entry("embedder", "embed"))
    assert only.lookup(None).id == "embedder"  # nothing else: listings still name it


# --------------------------------------------------------------------------- profiles


def profile_fields(**extra: Any) -> dict[str, Any]:
    return {"id": "e", "name": "E", "engine": "vllm", "hf_id": "org/e", "params_b": 0.03,
            "num_layers": 12, "num_kv_heads": 12, "head_dim": 32, "context_length": 512,
            "max_model_len": 512, **extra}  # fmt: skip


def test_an_embed_profile_needs_its_dimensions() -> None:
    with pytest.raises(ValidationError, match="task 'embed' needs an 'embeddings:' block"):
        ModelProfile.model_validate(profile_fields(task="embed"))
    with pytest.raises(ValidationError):
        ModelProfile.model_validate(profile_fields(task="classify", embeddings={"dimensions": 8}))
    made = ModelProfile.model_validate(profile_fields(task="embed", embeddings={"dimensions": 8}))
    assert made.task == "embed" and made.embeddings is not None
    assert made.embeddings.max_input_tokens == 512


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def test_vllm_starts_embed_profiles_as_pooling_models(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, jwt_secret="x" * 40)
    profiles = load_profiles()
    smol = profiles["smollm2-135m-embed-vllm"]
    argv = plan_launch(smol, settings).command(8000)
    assert (flag(argv, "--runner"), flag(argv, "--convert")) == ("pooling", "embed")
    assert smol.embeddings is not None and smol.embeddings.dimensions == 576
    probe = liveness_for(smol, settings, native=False).probe
    assert probe is not None and probe.task == "embed"

    bge = plan_launch(profiles["bge-small-en-v1.5"], settings).command(8000)
    assert (flag(bge, "--runner"), flag(bge, "--convert")) == ("pooling", None)

    chat = profiles["smollm2-135m-vllm"]
    assert flag(plan_launch(chat, settings).command(8000), "--runner") is None
    probe = liveness_for(chat, settings, native=False).probe
    assert probe is not None and probe.task == "generate"

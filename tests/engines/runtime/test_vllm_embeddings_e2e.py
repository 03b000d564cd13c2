"""Real vLLM (the CPU build, ``.venv-vllm``) as an embedding-only engine: the shipped
``smollm2-135m-embed-vllm`` profile, started by chatgate's own supervisor with the flags
``launch.py`` derives (``--runner pooling --convert embed``), ready once it embedded an
input (it cannot generate: a token probe would never make it ready), then attached to a
gateway: 576-dimensional unit vectors through ``/v1/embeddings`` with their usage row,
and chat with it refused before vLLM is asked.

vLLM's start dominates (~30 s on 2 idle cores, ~2 min on a loaded machine); bounded by
READY_S. Skipped (or failed under CI) where ``make vllm-env`` has not built the venv and
the model.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from sqlalchemy import select

from chatgate.db import migrate
from chatgate.db.models import RequestLog
from chatgate.engines.catalog.profiles import ModelProfile, load_profile_file, load_profiles
from chatgate.engines.runtime.launch import supervisor_for
from chatgate.engines.runtime.supervisor import EngineSupervisor
from chatgate.settings import Settings
from tests.conftest import gateway_settings
from tests.e2e.vllm_support import smollm2_hf_dir, vllm_python
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Gateway, start_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PROFILE = "smollm2-135m-embed-vllm"
DIMS = 576  # SmolLM2-135M's hidden size
READY_S = 170.0
Engine = tuple[EngineSupervisor, Path]


def local_profile(directory: Path) -> ModelProfile:
    """The shipped profile, pointed at the converted local model and kept off the network."""
    directory.mkdir()
    shipped = load_profiles()[PROFILE]
    data = shipped.model_dump(exclude={"source_file"}, exclude_none=True)
    data.pop("hf_id")
    data["path"] = str(smollm2_hf_dir())
    data["env"] = {**shipped.env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    path = directory / f"{PROFILE}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_profile_file(path)


def log_tail(supervisor: EngineSupervisor) -> str:
    log = supervisor.log_file
    return log.read_text(errors="replace")[-3000:] if log and log.exists() else "(no log)"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The engine's supervisor and the profiles directory that declares its model."""
    python = vllm_python()  # skip (or fail under CI) before anything starts
    tmp = tmp_path_factory.mktemp("vllm-embed")
    profile = local_profile(tmp / "profiles")
    settings = Settings(data_dir=tmp, jwt_secret="x" * 40, vllm_python=str(python))
    supervisor = supervisor_for(profile, settings)
    started = time.monotonic()
    supervisor.start()
    try:
        ready = supervisor.wait_ready(READY_S)
        assert ready, f"{supervisor.status()}\n{log_tail(supervisor)}"
        seconds = time.monotonic() - started
        print(f"vLLM pooling engine ready (an embedding worked) in {seconds:.0f} s")
        yield supervisor, tmp / "profiles"
    finally:
        supervisor.stop(timeout=30.0)


@pytest_asyncio.fixture(scope="module")
async def gw(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    supervisor, profiles = engine
    tmp = tmp_path_factory.mktemp("vllm-embed-gateway")
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    unused = FakeUpstream()  # gateway_settings wants one; only vLLM is configured
    settings = gateway_settings(
        tmp, url, unused, engines=[f"{PROFILE}={supervisor.base_url}"], default_model=PROFILE,
        profiles_dir=profiles, engine_ttft_timeout=60.0, engine_idle_timeout=30.0,
    )  # fmt: skip
    async with start_gateway(settings, unused) as gateway:
        yield gateway


async def test_vectors_and_usage_through_the_gateway(gw: Gateway) -> None:
    account = await gw.account()
    texts = ["The cat sat on the mat.", "Embeddings map text to vectors."]
    async with gw.client(timeout=120, headers=account.key_headers) as client:
        response = await client.post("/v1/embeddings", json={"model": PROFILE, "input": texts})
        refused = await client.post("/v1/chat/completions", json={
            "model": PROFILE, "messages": [{"role": "user", "content": "Hi"}]})  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    vectors = [item["embedding"] for item in body["data"]]
    assert [len(v) for v in vectors] == [DIMS, DIMS]
    for vector in vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-3)
    assert vectors[0] != vectors[1]
    prompt_tokens = body["usage"]["prompt_tokens"]
    assert prompt_tokens >= len(texts) and body["usage"]["total_tokens"] == prompt_tokens
    request_id = response.headers["x-request-id"]
    rows: list[RequestLog] = []
    async with gw.state.sessionmaker() as db:
        for _ in range(300):  # the usage writer is asynchronous
            query = select(RequestLog).where(RequestLog.request_id == request_id)
            rows = list((await db.scalars(query)).all())
            if rows:
                break
            await asyncio.sleep(0.02)
    assert [(r.route, r.model, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        ("v1.embeddings", PROFILE, prompt_tokens, 0)
    ]
    # vLLM's pooling runner has no chat route: the gateway refuses before asking it.
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "model"
    (endpoint,) = gw.state.registry.lookup(PROFILE).endpoints
    assert endpoint.task == "embed" and endpoint.healthy

"""An engine that segfaults on its first generation (as llama.cpp's AMX kernels did on an AMX
CPU): the supervisor stops after the crash-loop limit and says why, the gateway stays up,
readiness reports the reason and chats get a clear ``engine_failed`` error naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from chatgate.engines.runtime.liveness import EngineProbe, Liveness
from chatgate.engines.runtime.supervisor import EngineSupervisor
from tests.conftest import _migrated_url, gateway_settings
from tests.engines.runtime.test_supervisor import fake_command
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Gateway, start_gateway

CRASH_SENTENCE = "The engine fake crashed 3 times within 300 s (last: killed by signal SIGSEGV)"


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineSupervisor]:
    tmp = tmp_path_factory.mktemp("crashing-engine")
    liveness = Liveness(
        probe=EngineProbe("fake"),
        crash_limit=3,
        crash_window=300,
        hint=lambda code: "Run `chatgate doctor`.",
    )
    supervisor = EngineSupervisor(
        "fake",
        fake_command("--segfault-on-completion"),
        run_dir=tmp / "run",
        log_dir=tmp / "logs",
        backoff_initial=0.01,
        backoff_max=0.05,
        liveness=liveness,
    )
    supervisor.start()
    try:
        assert not supervisor.wait_ready(30)
        assert supervisor.status().state == "failed"
        yield supervisor
    finally:
        supervisor.stop(timeout=2.0)


@pytest_asyncio.fixture(scope="module")
async def gateway(
    crashed: EngineSupervisor, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gw-failed-engine")
    unused = FakeUpstream()
    async for url in _migrated_url("sqlite", tmp):
        settings = gateway_settings(
            tmp,
            url,
            unused,
            engines=[f"fake={crashed.base_url.removesuffix('/v1')}"],
            default_model="fake",
        )
        async with start_gateway(settings, unused, managed={"fake": crashed}) as gw:
            yield gw


async def test_readiness_reports_the_reason(gateway: Gateway) -> None:
    async with gateway.client() as client:
        assert (await client.get("/health")).status_code == 200  # the gateway is up
        response = await client.get("/health/ready")
    assert response.status_code == 503
    model = response.json()["checks"]["engines"]["fake"]
    assert not model["ok"]
    assert model["reason"].startswith(f"The engine for 'fake' has failed: {CRASH_SENTENCE}")
    assert model["endpoints"][0]["failed"] is True
    assert "Run `chatgate doctor`." in model["endpoints"][0]["error"]


async def test_v1_request_gets_engine_failed(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.post(
            "/v1/chat/completions",
            headers=account.key_headers,
            json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]},
        )
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "engine_failed"
    assert CRASH_SENTENCE in error["message"]
    assert "Last log lines" not in error["message"]  # the diagnosis, not the engine's log


async def test_web_chat_gets_engine_failed_event(gateway: Gateway) -> None:
    account = await gateway.account()
    events, response = await gateway.chat(account, message="hello")
    assert response.status_code == 200
    errors = [e for e in events if e.event == "error"]
    assert errors and errors[0].data["error"]["code"] == "engine_failed"
    assert CRASH_SENTENCE in errors[0].data["error"]["message"]
    done = [e for e in events if e.event == "done"]
    assert done and done[0].data["status"] == "error"

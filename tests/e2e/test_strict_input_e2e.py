"""Strict /v1 input in front of the real llama-server.

The issue's hostile bodies reached the engine, which could not parse them and answered a
5xx, reported as our 502. The gateway now refuses them first (400 naming the field); a
body the gateway takes but the engine refuses (a prompt beyond its context) still comes
back as the engine's own 4xx and reason, never a 502.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from chatgate.db import migrate
from chatgate.engines.runtime.embedded import (
    EngineSetupError,
    locate_llama_server,
    locate_smollm2_gguf,
)
from tests.conftest import gateway_settings
from tests.e2e.test_failover import MODEL, Engine
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Gateway, free_port, missing, start_gateway

pytestmark = pytest.mark.e2e

HOSTILE: list[tuple[dict[str, Any], str]] = [
    ({"messages": [{"role": "user", "content": {"text": "an object"}}]}, "messages.0.content"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 1000}, "n"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": -5}, "temperature"),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    try:
        locate_smollm2_gguf()
        locate_llama_server()
    except EngineSetupError as exc:
        missing(str(exc))
    started = Engine(free_port(), tmp_path_factory.mktemp("strict-engine"))
    try:
        started.start()
        yield started
    finally:
        started.kill()


@pytest_asyncio.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, engine: Engine
) -> AsyncIterator[Gateway]:
    await engine.ready()
    tmp = tmp_path_factory.mktemp("strict-gw")
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(
        tmp, url, FakeUpstream(), engines=[f"{MODEL}={engine.url}"], default_model=MODEL,
        engine_ttft_timeout=60.0,
    )  # fmt: skip
    async with start_gateway(settings, FakeUpstream()) as gw:
        yield gw


@pytest.mark.parametrize(("body", "param"), HOSTILE)
async def test_hostile_bodies_are_400_not_502(
    gateway: Gateway, engine: Engine, body: dict[str, Any], param: str
) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        direct = await client.post(
            engine.url + "/v1/chat/completions", json={"model": MODEL, "max_tokens": 1, **body}
        )
        response = await client.post(
            "/v1/chat/completions",
            json={"model": MODEL, "max_tokens": 1, **body},
            headers=account.key_headers,
        )
    print(f"llama-server alone answers {direct.status_code}: {direct.text[:200]}")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_an_engine_4xx_reaches_the_client_with_its_reason(
    gateway: Gateway, engine: Engine
) -> None:
    """A prompt beyond the engine's context (512 tokens a slot here): only the engine can
    tell, and its refusal is the client's to fix."""
    account = await gateway.account()
    body = {"model": MODEL, "max_tokens": 1,
            "messages": [{"role": "user", "content": "word " * 3000}]}  # fmt: skip
    async with gateway.client() as client:
        direct = await client.post(engine.url + "/v1/chat/completions", json=body)
        response = await client.post("/v1/chat/completions", json=body, headers=account.key_headers)
    assert 400 <= direct.status_code < 500, direct.text
    assert response.status_code == direct.status_code, response.text
    error = response.json()["error"]
    assert error["code"] == "engine_rejected"
    assert error["message"] and "engine failed" not in error["message"]

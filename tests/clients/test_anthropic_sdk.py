"""The official ``anthropic`` SDK (a pinned release, in ``.venv-clients``, built by
``make clients-env``, a prerequisite of ``make pytest``) against chatgate: once in front of
the fake engine, whose answers are known, and once end to end through ``chatgate serve``
with the real embedded llama.cpp engine, where only the shapes are the test.

The SDK runs in its own process (``anthropic_client.py``): its venv is not the gateway's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.db.models import RequestLog
from chatgate.engines.embedded import EngineSetupError, locate_llama_server, locate_smollm2_gguf
from tests.e2e.harness import ENGINE_NAME, Served, serve_env
from tests.helpers import Gateway, free_port, missing

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
SCRIPT = Path(__file__).with_name("anthropic_client.py")


async def run_client(base_url: str, api_key: str, model: str, mode: str) -> dict[str, Any]:
    """The SDK script's report (asynchronously: the fake gateway runs in this loop)."""
    if not CLIENTS_PYTHON.exists():
        missing(f"{CLIENTS_PYTHON} is missing (make clients-env installs the client SDKs)")
    process = await asyncio.create_subprocess_exec(
        str(CLIENTS_PYTHON), str(SCRIPT), base_url, api_key, model, mode,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), 240)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()[-4000:]
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


@pytest.mark.timeout(300)
async def test_anthropic_sdk_against_the_fake_engine(gateway: Gateway) -> None:
    account = await gateway.account()
    report = await run_client(gateway.url, account.api_key, "fake-model", "strict")
    assert report["version"] == "2.10.0"
    assert report["unauthorized"] == {"status": 401, "type": "authentication_error"}
    assert report["count_tokens"]["source"] == "estimate"  # the fake serves no /tokenize
    assert report["tools"]["called"] and report["tools"]["stop_reason"] == "tool_use"
    async with gateway.state.sessionmaker() as db:
        found = await db.scalars(
            select(RequestLog).where(
                RequestLog.user_id == account.user_id, RequestLog.route == "v1.messages"
            )
        )
        rows = list(found.all())
    # create, stream, the two legs of the tool round trip; count_tokens generates nothing
    assert [row.status for row in rows] == ["ok"] * 4
    usage = report["create"]["usage"]
    first = min(rows, key=lambda row: row.id)
    assert (usage["input_tokens"], usage["output_tokens"]) == (
        first.prompt_tokens,
        first.completion_tokens,
    )


@pytest_asyncio.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    try:
        locate_smollm2_gguf()
        locate_llama_server()
    except EngineSetupError as exc:
        missing(str(exc))
    data_dir = tmp_path_factory.mktemp("anthropic-sdk-e2e")
    port = free_port()
    instance = Served(data_dir, port, serve_env(data_dir, port, None))
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.mark.e2e
@pytest.mark.timeout(600)
async def test_anthropic_sdk_against_the_embedded_engine(served: Served) -> None:
    key = served.cli("keys", "create", "--user", "admin", "--name", "anthropic-sdk").split()[-1]
    report = await run_client(served.url, key, ENGINE_NAME, "loose")
    # llama-server counts with its own tokenizer (/apply-template + /tokenize): the count
    # of create's prompt is what the engine then reported for it.
    assert report["count_tokens"]["source"] == "engine"
    assert report["count_tokens"]["input_tokens"] == report["create"]["usage"]["input_tokens"]
    assert report["create"]["usage"]["output_tokens"] <= 16
    assert report["unauthorized"] == {"status": 401, "type": "authentication_error"}

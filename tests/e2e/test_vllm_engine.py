"""Real vLLM (CPU build) serving SmolLM2-135M: it starts with the arguments in
vllm_support, streams an OpenAI chat completion with usage, exposes the endpoints and
metrics the gateway relies on, and SIGTERM takes down its whole process group."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.db import migrate
from tests.conftest import gateway_settings
from tests.e2e.vllm_support import (
    SMOLLM2_CHAT_TEMPLATE,
    VllmServer,
    process_group_alive,
    smollm2_hf_dir,
    vllm_python,
)
from tests.fakes.upstream import FakeUpstream
from tests.helpers import free_port, parse_sse, start_gateway, text_of

# Startup (35-65 s here, up to STARTUP_TIMEOUT_S on a busy machine) counts against the
# first test's timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SERVED_NAME = "smollm2-vllm"


@pytest.fixture(scope="module")
def vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    vllm_python()  # skip (or fail under CI) before anything starts
    log_dir: Path = tmp_path_factory.mktemp("vllm")
    server = VllmServer(
        port=free_port(),
        model_dir=smollm2_hf_dir(),
        served_name=SERVED_NAME,
        log_path=log_dir / "vllm.log",
        chat_template=SMOLLM2_CHAT_TEMPLATE,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def stream_chat(server: VllmServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The `data:` chunks of a streamed /v1/chat/completions, up to [DONE]."""
    chunks: list[dict[str, Any]] = []
    with httpx.stream(
        "POST", server.url + "/v1/chat/completions", json=body, timeout=120
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                return chunks
            chunks.append(json.loads(line.removeprefix("data: ")))
    raise AssertionError(f"stream ended without [DONE] after {len(chunks)} chunks")


def test_streamed_chat_completion_reports_usage(vllm: VllmServer) -> None:
    chunks = stream_chat(
        vllm,
        {
            "model": SERVED_NAME,
            "messages": [{"role": "user", "content": "Name three colours of the rainbow."}],
            "max_tokens": 32,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text.strip(), f"no text streamed: {chunks[:3]}"
    assert all(chunk["model"] == SERVED_NAME for chunk in chunks)
    finish = [c["finish_reason"] for chunk in chunks for c in chunk["choices"]]
    assert finish[-1] in ("stop", "length")
    usage = chunks[-1]["usage"]  # include_usage: a last chunk with no choices, only usage
    assert chunks[-1]["choices"] == []
    assert usage["prompt_tokens"] > 0
    assert 0 < usage["completion_tokens"] <= 32
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_models_health_and_metrics(vllm: VllmServer) -> None:
    assert httpx.get(vllm.url + "/health", timeout=5).status_code == 200
    models = httpx.get(vllm.url + "/v1/models", timeout=5).json()
    assert [m["id"] for m in models["data"]] == [SERVED_NAME]
    assert models["data"][0]["max_model_len"] == 2048
    metrics = httpx.get(vllm.url + "/metrics", timeout=5).text
    label = f'model_name="{SERVED_NAME}"'
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:generation_tokens_total",
    ):
        assert any(
            line.startswith(name + "{") and label in line for line in metrics.splitlines()
        ), f"{name} missing from /metrics"


async def test_chatgate_relays_vllm_as_a_second_engine(
    vllm: VllmServer, tmp_path: Path
) -> None:
    """vLLM attached beside another engine: chat through chatgate (/v1 and the web chat),
    usage accounted, and the engine's own queue/KV-cache gauges scraped for routing."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    other = FakeUpstream()
    await other.start()
    settings = gateway_settings(
        tmp_path,
        url,
        other,
        engines=[f"fake-model={other.url}", f"{SERVED_NAME}={vllm.url}"],
        engine_health_interval=0.5,
        engine_ttft_timeout=60.0,
    )
    try:
        async with start_gateway(settings, other) as gw:
            account = await gw.account()
            body = {
                "model": SERVED_NAME,
                "messages": [{"role": "user", "content": "Name a colour."}],
                "max_tokens": 16,
                "temperature": 0,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            async with gw.client(timeout=120) as client:
                response = await client.post(
                    "/v1/chat/completions", json=body, headers=account.key_headers
                )
            events = parse_sse(response.text)
            assert response.status_code == 200 and events[-1].data == "[DONE]"
            chunks = [e.data for e in events if isinstance(e.data, dict)]
            assert all(c["model"] == SERVED_NAME for c in chunks)
            assert chunks[-1]["usage"]["completion_tokens"] > 0  # vLLM's own count

            web, reply = await gw.chat(account, message="Name a fruit.", model=SERVED_NAME)
            assert reply.status_code == 200 and text_of(web).strip()
            assert web[-1].event == "done"

            entry = gw.state.registry.get(SERVED_NAME)
            assert entry is not None
            async with asyncio.timeout(10):
                while entry.endpoints[0].metrics is None:
                    await asyncio.sleep(0.2)
            assert entry.endpoints[0].metrics.kv_cache_usage is not None
    finally:
        await other.stop()


def test_sigterm_stops_the_whole_process_group(vllm: VllmServer) -> None:
    assert vllm.process is not None
    pgid = vllm.process.pid
    vllm.stop()
    assert not process_group_alive(pgid), "vLLM left processes behind"
    assert vllm.stop_s < 20, f"SIGTERM took {vllm.stop_s:.1f} s"

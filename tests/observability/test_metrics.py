"""/metrics after real traffic: histograms observed, tokens counted, token-protected."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chatgate.db import migrate
from chatgate.engines.upstream.monitor import EngineMonitor
from chatgate.observability.metrics import Metrics
from chatgate.observability.router import record_gpus
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Gateway, start_gateway


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_after_chat_and_v1_traffic(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        before = (await client.get("/metrics")).text
        await gateway.chat(account, message="hello [[chunks=10]]")
        await client.post(
            "/v1/chat/completions",
            headers=account.key_headers,
            json={
                "model": "fake-model",
                "stream": True,
                "messages": [{"role": "user", "content": "hi [[chunks=5]]"}],
            },
        )
        await client.post(
            "/v1/chat/completions",
            headers=account.key_headers,
            json={
                "model": "fake-model",
                "messages": [{"role": "user", "content": "[[status=500]]"}],
            },
        )
        await client.get("/health/ready")
        after = (await client.get("/metrics")).text
    assert (
        value(after, "chatgate_requests_total", route="chat", model="fake-model", status="ok")
        == value(before, "chatgate_requests_total", route="chat", model="fake-model", status="ok")
        + 1
    )
    assert (
        value(after, "chatgate_requests_total", route="v1.chat", model="fake-model", status="error")
        >= 1
    )
    assert (
        value(after, "chatgate_time_to_first_token_seconds_count", model="fake-model")
        >= value(before, "chatgate_time_to_first_token_seconds_count", model="fake-model") + 2
    )
    assert (
        value(after, "chatgate_inter_token_latency_seconds_count", model="fake-model")
        >= value(before, "chatgate_inter_token_latency_seconds_count", model="fake-model") + 13
    )
    assert (
        value(after, "chatgate_tokens_total", model="fake-model", direction="output")
        >= value(before, "chatgate_tokens_total", model="fake-model", direction="output") + 15
    )
    assert (
        value(after, "chatgate_request_duration_seconds_count", route="v1.chat", model="fake-model")
        >= 2
    )
    assert value(after, "chatgate_active_streams") == 0
    assert (
        value(
            after,
            "chatgate_engine_response_seconds_count",
            engine=gateway.state.registry.resolve("fake-model").endpoints[0].name,
        )
        >= 2
    )
    assert value(after, "chatgate_db_latency_seconds_count", operation="probe") >= 1
    assert value(after, "chatgate_db_latency_seconds_count", operation="usage_commit") >= 1
    assert not re.search(r'user(_id)?="', after), "no user ids as labels"


async def test_engine_up_follows_health(gateway: Gateway) -> None:
    state = gateway.state
    monitor = EngineMonitor(state.engines, state.registry, state.metrics)
    await monitor.check_all()
    async with gateway.client() as client:
        text = (await client.get("/metrics")).text
    name = state.registry.resolve("fake-model").endpoints[0].name
    assert value(text, "chatgate_engine_up", engine=name) == 1


async def test_metrics_token_is_required_when_set(tmp_path: Path, upstream: FakeUpstream) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(tmp_path, url, upstream, metrics_token="scrape-secret-123")
    async with start_gateway(settings, upstream) as gateway:
        async with gateway.client() as client:
            anonymous = await client.get("/metrics")
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            right = await client.get(
                "/metrics", headers={"Authorization": "Bearer scrape-secret-123"}
            )
    assert anonymous.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200 and "chatgate_requests_total" in right.text


def test_gpu_gauges_from_nvml_readings() -> None:
    metrics = Metrics()
    record_gpus(
        metrics,
        {
            "devices": [
                {
                    "index": 0,
                    "memory_used_bytes": 2**30,
                    "memory_total_bytes": 2**34,
                    "utilization_percent": 87,
                    "temperature_c": 61,
                    "power_w": 250.5,
                }
            ]
        },
    )
    text = generate_latest(metrics.registry).decode()
    assert value(text, "chatgate_gpu_utilization_ratio", gpu="0") == 0.87
    assert value(text, "chatgate_gpu_memory_total_bytes", gpu="0") == 2**34
    assert value(text, "chatgate_gpu_power_watts", gpu="0") == 250.5

"""EngineMonitor against fake engines: /health with the /v1/models fallback, readmission
of an open circuit, /metrics scraping with back-off, and the gauges that follow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint, Timeouts
from chatgate.engines.upstream.health import check_endpoint
from chatgate.engines.upstream.monitor import EngineMonitor
from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.observability.metrics import Metrics
from tests.fakes.upstream import FakeUpstream
from tests.helpers import free_port

VLLM_METRICS = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 6.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
"""


@pytest_asyncio.fixture
async def client() -> AsyncIterator[EngineClient]:
    c = EngineClient(Timeouts(connect=1.0, first_token=2.0, idle=2.0))
    await c.start()
    yield c
    await c.close()


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


def endpoint_at(url: str) -> Endpoint:
    return Endpoint(name=url.rsplit(":", 1)[-1], base_url=url + "/v1", upstream_model="m")


def monitored(
    client: EngineClient, endpoint: Endpoint
) -> tuple[EngineMonitor, ModelRegistry, Metrics]:
    registry = ModelRegistry("m", circuit_failures=1, circuit_open_seconds=60)
    registry.add(ModelEntry(id="m", name="M", endpoints=[endpoint]))
    metrics = Metrics()
    return EngineMonitor(client, registry, metrics, interval=0.05), registry, metrics


def gauge(metrics: Metrics, name: str, engine: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"engine": engine})


async def test_health_endpoint_first_then_the_model_list(
    client: EngineClient, fake: FakeUpstream
) -> None:
    endpoint = endpoint_at(fake.url)
    fake.health_status = 200
    assert await check_endpoint(client, endpoint) is True
    assert endpoint.probe_models is False
    fake.health_status = 503  # vLLM whose engine died
    assert await check_endpoint(client, endpoint) is False
    assert (endpoint.healthy, endpoint.last_error) == (False, "HTTP 503")
    fake.health_status = None  # llama-cpp-python: no /health, the model list answers
    assert await check_endpoint(client, endpoint) is True
    assert endpoint.probe_models is True and endpoint.last_error is None


async def test_a_healthy_probe_readmits_an_open_circuit(
    client: EngineClient, fake: FakeUpstream
) -> None:
    endpoint = endpoint_at(fake.url)
    monitor, registry, metrics = monitored(client, endpoint)
    registry.record_failure(endpoint, "connection refused")
    assert endpoint.breaker.state(registry.clock()) == "open" and not endpoint.healthy
    await monitor.check_all()
    assert endpoint.healthy and endpoint.breaker.state(registry.clock()) == "closed"
    assert gauge(metrics, "chatgate_engine_circuit_state", endpoint.name) == 0
    assert gauge(metrics, "chatgate_engine_up", endpoint.name) == 1


async def test_a_passing_probe_does_not_forgive_failing_requests(
    client: EngineClient, fake: FakeUpstream
) -> None:
    endpoint = endpoint_at(fake.url)
    monitor, registry, _ = monitored(client, endpoint)
    registry.configure_routing(circuit_failures=3, circuit_open_seconds=60, affinity_sessions=9)
    registry.record_failure(endpoint, "HTTP 500")
    registry.record_failure(endpoint, "HTTP 500")
    await monitor.check_all()
    assert endpoint.breaker.consecutive_failures == 2


async def test_a_dead_engine_is_unhealthy_and_its_circuit_stays(client: EngineClient) -> None:
    endpoint = endpoint_at(f"http://127.0.0.1:{free_port()}")
    monitor, registry, metrics = monitored(client, endpoint)
    registry.record_failure(endpoint, "connection refused")
    await monitor.check_all()
    assert not endpoint.healthy and endpoint.last_error is not None
    assert endpoint.last_error.startswith("unreachable")
    assert endpoint.breaker.state(registry.clock()) == "open"
    assert gauge(metrics, "chatgate_engine_circuit_state", endpoint.name) == 2
    assert gauge(metrics, "chatgate_engine_up", endpoint.name) == 0
    assert endpoint.scrape.misses == 0, "no /metrics requests to an engine that is down"


async def test_engine_metrics_are_scraped_and_exported(
    client: EngineClient, fake: FakeUpstream
) -> None:
    fake.metrics_text = VLLM_METRICS
    endpoint = endpoint_at(fake.url)
    monitor, _, metrics = monitored(client, endpoint)
    endpoint.outstanding = 3
    await monitor.check_all()
    assert endpoint.metrics is not None and endpoint.metrics.requests_waiting == 6
    assert endpoint.public()["metrics"] == {
        "requests_running": 2.0,
        "requests_waiting": 6.0,
        "kv_cache_usage": 0.5,
    }
    assert gauge(metrics, "chatgate_engine_requests_running", endpoint.name) == 2
    assert gauge(metrics, "chatgate_engine_requests_waiting", endpoint.name) == 6
    assert gauge(metrics, "chatgate_engine_kv_cache_usage_ratio", endpoint.name) == 0.5
    assert gauge(metrics, "chatgate_engine_outstanding_requests", endpoint.name) == 3
    await monitor.check_all()
    assert fake.scrapes == 2  # answered: asked every cycle

    fake.metrics_text = None  # e.g. replaced by an engine without metrics
    await monitor.check_all()
    assert endpoint.metrics is None
    assert gauge(metrics, "chatgate_engine_requests_waiting", endpoint.name) is None


async def test_no_metrics_backs_off_instead_of_asking_every_cycle(
    client: EngineClient, fake: FakeUpstream
) -> None:
    endpoint = endpoint_at(fake.url)
    monitor, _, _ = monitored(client, endpoint)
    for _ in range(4):
        await monitor.check_all()
    assert fake.scrapes == 1 and endpoint.metrics is None and endpoint.healthy


async def test_the_background_loop_runs_and_stops(client: EngineClient, fake: FakeUpstream) -> None:
    endpoint = endpoint_at(fake.url)
    monitor, registry, _ = monitored(client, endpoint)
    registry.record_failure(endpoint, "boom")
    monitor.start()
    for _ in range(100):
        if endpoint.healthy:
            break
        await asyncio.sleep(0.02)
    await monitor.close()
    assert endpoint.healthy


async def test_an_engine_that_cannot_generate_is_unhealthy_until_it_can(
    client: EngineClient, fake: FakeUpstream
) -> None:
    """Up is not enough: an idle attached engine is asked for one token per interval."""
    endpoint = endpoint_at(fake.url)
    fake.health_status = 200
    monitor, registry, metrics = monitored(client, endpoint)
    fake.forced = {"status": "500"}  # answers /health, fails every generation
    await monitor.check_all()
    assert endpoint.healthy is False
    assert endpoint.probe_error is not None and "1-token generation" in endpoint.probe_error
    assert endpoint.last_error == endpoint.probe_error
    assert gauge(metrics, "chatgate_engine_up", endpoint.name) == 0
    assert fake.probes == 1 and fake.requests == []
    await monitor.check_all()  # a failed probe is retried at once, not after the interval
    assert fake.probes == 2

    fake.forced = {}
    await monitor.check_all()
    assert endpoint.healthy is True and endpoint.probe_error is None
    registry.record_success(endpoint)  # real traffic proves it: no probe within the interval
    await monitor.check_all()
    assert fake.probes == 3
    assert gauge(metrics, "chatgate_engine_failed", endpoint.name) == 0


async def test_managed_engines_are_probed_by_their_supervisor_not_the_monitor(
    client: EngineClient, fake: FakeUpstream
) -> None:
    endpoint = endpoint_at(fake.url)
    endpoint.kind = "managed"
    endpoint.restarts, endpoint.wedged_restarts = 3, 1
    fake.health_status = 200
    monitor, _registry, metrics = monitored(client, endpoint)
    await monitor.check_all()
    assert fake.probes == 0  # no generation from the monitor
    sample = metrics.registry.get_sample_value
    labels = {"engine": endpoint.name}
    assert sample("chatgate_engine_supervisor_restarts", {**labels, "reason": "wedged"}) == 1
    assert sample("chatgate_engine_supervisor_restarts", {**labels, "reason": "crash"}) == 2

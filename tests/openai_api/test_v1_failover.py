"""/v1 through a model with two replicas: failures before the first token are retried on
the other replica (and the usage row names the one that served); after the first
content, never."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.db import migrate
from chatgate.db.models import RequestLog
from chatgate.engines.upstream.health import check_endpoint
from tests.conftest import Pair, gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Gateway, free_port, parse_sse, start_gateway, text_of

ANSWER = "Paris is the capital of France."


async def two_replica_gateway(tmp: Path, first_url: str, second: FakeUpstream) -> Any:
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    engines = [f"fake-model={first_url}", f"fake-model={second.url}"]
    return start_gateway(gateway_settings(tmp, url, second, engines=engines), second)


@pytest_asyncio.fixture(scope="module")
async def gw(tmp_path_factory: pytest.TempPathFactory, pair: Pair) -> AsyncIterator[Gateway]:
    a, b = pair
    async with await two_replica_gateway(tmp_path_factory.mktemp("gw-pair"), a.url, b) as gw:
        yield gw


@pytest.fixture(autouse=True)
def _fresh(pair: Pair) -> Iterator[None]:
    yield
    for fake in pair:
        fake.forced = {}


@pytest_asyncio.fixture
async def api_key(gw: Gateway) -> str:
    # Each test starts with every replica closed and healthy (failures here are on purpose).
    for endpoint in gw.state.registry.endpoints():
        endpoint.breaker.succeeded()
        endpoint.healthy = True
    return (await gw.account()).api_key


def registry_pick(gw: Gateway) -> Any:
    registry = gw.state.registry
    return registry.pick(registry.resolve("fake-model"))


def name_of(fake: FakeUpstream) -> str:
    return f"fake-model@127.0.0.1:{fake.port}"


async def post(
    gw: Gateway, key: str, content: str, stream: bool, **extra: Any
) -> tuple[str, httpx.Response]:
    request_id = f"fo-{uuid.uuid4().hex}"
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": f"{content} ({request_id})"}],
        "stream": stream,
        **extra,
    }
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id}
    async with gw.client() as http:
        response = await http.post("/v1/chat/completions", json=body, headers=headers)
    return request_id, response


async def rows(gw: Gateway, request_id: str) -> list[RequestLog]:
    async with gw.state.sessionmaker() as db:
        query = select(RequestLog).where(RequestLog.request_id == request_id)
        return list((await db.scalars(query)).all())


def answer_of(response: httpx.Response, stream: bool) -> str:
    if stream:
        return text_of(parse_sse(response.text))
    return str(response.json()["choices"][0]["message"]["content"])


@pytest.mark.parametrize(
    ("forced", "stream"),
    [
        ({"status": "500"}, False),
        ({"status": "500"}, True),
        ({"reset": "1"}, False),
        ({"reset": "1"}, True),
        ({"role_first": "1", "crash_after": "0"}, True),  # only streams can break midway
    ],
    ids=["5xx", "5xx-stream", "reset", "reset-stream", "crash-before-content-stream"],
)
async def test_a_failing_replica_is_invisible_to_the_client(
    gw: Gateway, pair: Pair, api_key: str, stream: bool, forced: dict[str, str]
) -> None:
    a, b = pair
    a.forced = forced
    request_id, response = await post(gw, api_key, "hi", stream)
    assert response.status_code == 200, response.text
    assert answer_of(response, stream) == ANSWER  # once: nothing of the failed try leaked
    # A dropped connection before any answer may be a stale keep-alive one: it is retried
    # once on a fresh connection to the same replica before failing over.
    tries_on_a = 2 if "reset" in forced else 1
    assert len(a.served(request_id)) == tries_on_a and len(b.served(request_id)) == 1
    (row,) = await rows(gw, request_id)
    assert (row.status, row.status_code, row.engine) == ("ok", 200, name_of(b))
    assert all(ep.outstanding == 0 for ep in gw.state.registry.endpoints())


async def test_a_crash_after_the_first_chunk_is_not_retried(
    gw: Gateway, pair: Pair, api_key: str
) -> None:
    a, b = pair
    a.forced = {"crash_after": "3"}
    request_id, response = await post(gw, api_key, "hi", stream=True)
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]"
    assert events[-2].data["error"]["code"] == "engine_disconnected"
    assert text_of(events) == "Paris is the"
    assert b.served(request_id) == [], "never retried once content went out"
    (row,) = await rows(gw, request_id)
    assert (row.status, row.status_code, row.engine) == ("error", 502, name_of(a))
    endpoint_a = gw.state.registry.resolve("fake-model").endpoints[0]
    assert endpoint_a.breaker.consecutive_failures == 1


async def test_the_clients_fault_is_passed_through_not_retried(
    gw: Gateway, pair: Pair, api_key: str
) -> None:
    a, b = pair
    a.forced = {"status": "400"}
    request_id, response = await post(gw, api_key, "hi", stream=True)
    assert response.status_code == 400
    assert b.served(request_id) == []
    (row,) = await rows(gw, request_id)
    assert (row.status, row.status_code, row.engine) == ("error", 400, name_of(a))
    assert all(ep.breaker.consecutive_failures == 0 for ep in gw.state.registry.endpoints())


async def test_when_both_replicas_fail_one_error_and_one_row(
    gw: Gateway, pair: Pair, api_key: str
) -> None:
    a, b = pair
    a.forced = b.forced = {"status": "503"}
    for stream in (False, True):
        request_id, response = await post(gw, api_key, "hi", stream)
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "engine_error"
        (row,) = await rows(gw, request_id)
        assert (row.status, row.status_code, row.engine) == ("error", 502, name_of(b))


async def test_a_failing_replica_is_taken_out_of_rotation(
    gw: Gateway, pair: Pair, api_key: str
) -> None:
    a, b = pair
    a.forced = {"status": "500"}
    failures = gw.settings.engine_circuit_failures
    for _ in range(failures):
        _, response = await post(gw, api_key, "hi", stream=True)
        assert response.status_code == 200
    endpoint_a = gw.state.registry.resolve("fake-model").endpoints[0]
    view = endpoint_a.public()
    assert (view["circuit"], view["healthy"]) == ("open", False)
    assert view["consecutive_failures"] == failures and "fake failure 500" in view["last_error"]
    before = len(a.requests)
    request_id, response = await post(gw, api_key, "hi", stream=False)
    assert response.status_code == 200 and len(a.requests) == before  # not even tried
    (row,) = await rows(gw, request_id)
    assert row.engine == name_of(b)


@pytest_asyncio.fixture(scope="module")
async def dead_first(
    tmp_path_factory: pytest.TempPathFactory, pair: Pair
) -> AsyncIterator[Gateway]:
    """The first replica's port has nothing listening: every connection is refused."""
    _, b = pair
    dead = f"http://127.0.0.1:{free_port()}"
    async with await two_replica_gateway(tmp_path_factory.mktemp("gw-dead"), dead, b) as gw:
        yield gw


async def test_a_refused_replica_never_fails_a_request(dead_first: Gateway, pair: Pair) -> None:
    _, b = pair
    key = (await dead_first.account()).api_key
    dead = dead_first.state.registry.resolve("fake-model").endpoints[0]
    assert await check_endpoint(dead_first.state.engines, dead) is False  # as the monitor does
    assert registry_pick(dead_first) != dead, "known down: not even tried"
    dead.healthy = True  # as if it died after that check: requests find out themselves
    for i in range(6):
        request_id, response = await post(dead_first, key, "hi", stream=bool(i % 2))
        assert response.status_code == 200, response.text
        assert answer_of(response, bool(i % 2)) == ANSWER
        (row,) = await rows(dead_first, request_id)
        assert row.engine == name_of(b)
    assert not dead.healthy and dead.public()["circuit"] == "open"
    assert dead.outstanding == 0
    failovers = dead_first.state.metrics.registry.get_sample_value(
        "chatgate_engine_failovers_total", {"model": "fake-model"}
    )
    assert failovers == dead_first.settings.engine_circuit_failures

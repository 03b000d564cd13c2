"""Two `chatgate serve` processes sharing Redis in front of one fake engine with two slots:
user A floods gateway 1 with six slow streams; user B's request on gateway 2 is admitted at
the next freed slot, ahead of A's queued ones, and the engine never serves more than its two
slots at once (without the shared ledger it would see three: B admitted by gateway 2's own
queue; with gateways' own queues and B sent there first, FCFS at the engine)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from redis import Redis

from tests.conftest import REDIS_HOST, REDIS_PORT, require_service
from tests.e2e.harness import Served, serve_env
from tests.fakes.upstream import FakeUpstream, Recorded
from tests.helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SLOTS = 2
MODEL = "fake-model"
FLOOD = "[[chunks=24 delay=0.25]] A floods"  # ~6 s per stream: B arrives well within it
SHORT = "[[chunks=2 delay=0.05]] B asks"


@pytest_asyncio.fixture
async def fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[FakeUpstream, str, Served, Served]]:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    engine = FakeUpstream(model=MODEL)
    await engine.start()
    data_dir = tmp_path_factory.mktemp("e2e-shared-fair")
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    gateways: list[Served] = []
    for _ in range(2):
        env = serve_env(data_dir, free_port(), None)
        env.update(
            CHATGATE_REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            CHATGATE_REDIS_PREFIX=prefix,
            CHATGATE_ENGINE_DEFAULT_SLOTS=str(SLOTS),  # the fake says nothing of its slots
            CHATGATE_RATELIMIT_DEFAULTS='{"user": {}, "admin": {}}',
        )
        args = ["--no-embedded", "--engine", f"{MODEL}={engine.url}/v1"]
        gateways.append(Served(data_dir, int(env["CHATGATE_PORT"]), env, args=args))
    try:
        for gateway in gateways:
            await asyncio.to_thread(gateway.start)
        yield engine, prefix, gateways[0], gateways[1]
    finally:
        for gateway in gateways:
            await asyncio.to_thread(gateway.stop)
        await engine.stop()


async def stream(client: httpx.AsyncClient, url: str, key: str, content: str) -> None:
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": content}]}
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream("POST", url + "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        async for _ in r.aiter_lines():
            pass


def most_at_once(records: list[Recorded]) -> int:
    """The engine's peak concurrency: an end at the same instant as a start comes first."""
    events = [(r.started, 1) for r in records]
    events += [(r.finished or r.aborted_at or time.time(), -1) for r in records]
    peak = current = 0
    for _, step in sorted(events):
        current += step
        peak = max(peak, current)
    return peak


async def queued(prefix: str, count: int) -> None:
    """Wait (bounded) until ``count`` requests wait in the fleet's queue in Redis."""
    redis = Redis(host=REDIS_HOST, port=REDIS_PORT)
    try:
        for _ in range(600):
            if redis.zcard(f"{prefix}-adm2:{{{MODEL}}}:q:1") == count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{count} requests never queued")
    finally:
        redis.close()


async def test_b_on_gateway_2_goes_before_as_queue_on_gateway_1(
    fleet: tuple[FakeUpstream, str, Served, Served],
) -> None:
    engine, prefix, one, two = fleet
    keys = {}
    for user in ("flooder", "neighbour"):
        await asyncio.to_thread(one.cli, "users", "add", user, "--password", "fair-e2e-pass")
        made = await asyncio.to_thread(one.cli, "keys", "create", "--user", user, "--name", "k")
        keys[user] = made.split()[-1]
    async with httpx.AsyncClient(timeout=120) as client:
        warm = {"Authorization": f"Bearer {keys['neighbour']}"}
        assert (await client.get(two.url + "/v1/models", headers=warm)).status_code == 200
        flood = [
            asyncio.create_task(stream(client, one.url, keys["flooder"], FLOOD))
            for _ in range(3 * SLOTS)
        ]
        await queued(prefix, 3 * SLOTS - SLOTS)  # two streaming, four waiting in Redis
        await stream(client, two.url, keys["neighbour"], SHORT)
        await asyncio.gather(*flood)
    records = [r for r in engine.requests if r.path.endswith("/chat/completions")]
    assert len(records) == 3 * SLOTS + 1
    b_start = next(r.started for r in records if "B asks" in str(r.payload))
    flood_records = [r for r in records if "A floods" in str(r.payload)]
    a_before_b = sum(1 for r in flood_records if r.started < b_start)
    # B took the first slot that freed (A's first two end within milliseconds of each other,
    # so the other one may reach the engine first): never behind A's queued four.
    first_free = min(r.finished or 0.0 for r in flood_records if r.started < b_start)
    assert a_before_b <= SLOTS + 1, a_before_b
    assert b_start - first_free < 2.0, b_start - first_free
    assert most_at_once(records) <= SLOTS  # the fleet, not each gateway, holds the slots

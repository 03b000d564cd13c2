"""Fair admission through a real gateway: one user's burst on a one-slot engine does not
hold another user's request behind all of it; web chats hear their place in the queue; a
key marked ``batch`` waits behind API traffic; usage rows say how long each request
queued."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.db.models import RequestLog
from chatgate.limits import admin as limits_admin
from tests.conftest import _migrated_url, gateway_settings
from tests.fakes.upstream import FakeUpstream, Recorded, copies
from tests.helpers import Account, Gateway, start_gateway

SLOW = "[[chunks=12 delay=0.05]] tell me"  # ~0.6 s of streaming per answer


@pytest_asyncio.fixture(scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("gw-fair")
    fake = FakeUpstream()
    await fake.start()
    try:
        async for url in _migrated_url("sqlite", tmp):
            # The fake engine says nothing about its slots: the pool assumes one.
            settings = gateway_settings(tmp, url, fake, engine_default_slots=1)
            async with start_gateway(settings, fake) as gw:
                yield gw
    finally:
        await fake.stop()


async def post_v1(
    gw: Gateway, account: Account, label: str, content: str = SLOW, **extra: Any
) -> httpx.Response:
    async with gw.client(timeout=60) as client:
        return await client.post(
            "/v1/chat/completions",
            headers={**account.key_headers, "X-Request-ID": label},
            json={
                "model": "fake-model",
                "stream": True,
                "messages": [{"role": "user", "content": content}],
                **extra,
            },
        )


async def wait_for_waiters(gw: Gateway, count: int) -> None:
    pools = gw.state.upstreams.pools
    assert pools is not None
    queue = pools.queue(gw.state.registry.resolve("fake-model"))
    for _ in range(400):
        if queue.waiting >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{queue.waiting} waiting, expected {count}")


async def started_order(gw: Gateway, labels: list[str]) -> list[str]:
    started = {label: gw.upstream.by_request_id(label).started for label in labels}
    return sorted(labels, key=lambda label: started[label])


async def test_a_newcomer_is_not_queued_behind_a_burst(gateway: Gateway) -> None:
    a, b = await gateway.account(), await gateway.account()
    burst = [asyncio.create_task(post_v1(gateway, a, f"fair-a{i}")) for i in range(4)]
    await wait_for_waiters(gateway, 3)
    late = asyncio.create_task(post_v1(gateway, b, "fair-b"))
    responses = await asyncio.gather(*burst, late)
    assert all(r.status_code == 200 for r in responses)
    order = await started_order(gateway, [f"fair-a{i}" for i in range(4)] + ["fair-b"])
    assert order.index("fair-b") <= 2, order  # after the one in flight, at most one more
    # (A holds the slot, so B's tag is ahead of every waiting A request: it is second.)
    async with gateway.state.sessionmaker() as db:
        rows = {
            row.request_id: row
            for row in await db.scalars(
                select(RequestLog).where(RequestLog.request_id.like("fair-%"))
            )
        }
    assert rows["fair-b"].queue_ms is not None and rows["fair-b"].queue_ms > 0
    first = min(rows[f"fair-a{i}"].queue_ms or 0.0 for i in range(4))
    assert first < 100  # whichever of A's came first was admitted at once


async def test_a_waiting_web_chat_hears_its_place_in_the_queue(gateway: Gateway) -> None:
    a, b = await gateway.account(), await gateway.account()
    holder = asyncio.create_task(post_v1(gateway, a, "fair-holder"))
    while not gateway.upstream.served("fair-holder"):
        await asyncio.sleep(0.01)
    events, response = await gateway.chat(b, message="hello")
    await holder
    assert response.status_code == 200
    kinds = [event.event for event in events]
    assert "queue" in kinds, kinds
    first_content = next(i for i, e in enumerate(events) if e.event == "message")
    queued = events[kinds.index("queue")]
    assert kinds.index("queue") < first_content
    assert queued.data == {"position": 0, "model": "fake-model"}
    assert events[-1].event == "done" and events[-1].data["status"] == "complete"


async def test_a_batch_key_waits_behind_api_traffic(gateway: Gateway) -> None:
    a, b, c = await gateway.account(), await gateway.account(), await gateway.account()
    async with gateway.state.sessionmaker() as db:
        user = await limits_admin.set_user_limits(db, b.user_id, {"queue_priority": "batch"})
    assert user["queue_priority"] == "batch"
    holder = asyncio.create_task(post_v1(gateway, a, "prio-holder"))
    while not gateway.upstream.served("prio-holder"):
        await asyncio.sleep(0.01)
    batch = asyncio.create_task(post_v1(gateway, b, "prio-batch"))
    await wait_for_waiters(gateway, 1)
    api = asyncio.create_task(post_v1(gateway, c, "prio-api"))
    await wait_for_waiters(gateway, 2)
    await asyncio.gather(holder, batch, api)
    order = await started_order(gateway, ["prio-holder", "prio-batch", "prio-api"])
    assert order == ["prio-holder", "prio-api", "prio-batch"]


async def test_the_queue_can_be_turned_off(tmp_path: Path) -> None:
    fake = FakeUpstream()
    await fake.start()
    try:
        async for url in _migrated_url("sqlite", tmp_path):
            settings = gateway_settings(tmp_path, url, fake, engine_fair_queue=False)
            async with start_gateway(settings, fake) as gw:
                assert gw.state.upstreams.pools is None  # straight to the engines
                account = await gw.account()
                response = await post_v1(gw, account, "no-queue")
                assert response.status_code == 200
    finally:
        await fake.stop()


def peak_sequences(records: list[Recorded]) -> int:
    """The most answers the engine generated at once: each request's ``n`` from its
    arrival until its last chunk was written (the gateway frees its slots only after)."""
    events: list[tuple[float, int, int]] = []
    for record in records:
        assert record.finished is not None, record.request_id
        n = copies(record.payload)
        events += [(record.started, 1, n), (record.finished, 0, -n)]
    inside = peak = 0
    for _, _, change in sorted(events):  # at one instant, an end before a start
        inside += change
        peak = max(peak, inside)
    return peak


async def test_a_request_for_n_answers_holds_n_slots(tmp_path: Path) -> None:
    """Four slots: a request for four answers fills them (the engine generates the four
    at once), so another user's four requests wait for it instead of joining it."""
    fake = FakeUpstream()
    await fake.start()
    try:
        async for url in _migrated_url("sqlite", tmp_path):
            settings = gateway_settings(tmp_path, url, fake, engine_default_slots=4)
            async with start_gateway(settings, fake) as gw:
                a, b = await gw.account(), await gw.account()
                wide = asyncio.create_task(
                    post_v1(gw, a, "wide", "[[chunks=30 delay=0.1]] four answers", n=4)
                )
                for _ in range(1000):
                    if fake.served("wide"):
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the request for four answers never reached the engine")
                singles = [asyncio.create_task(post_v1(gw, b, f"one{i}")) for i in range(4)]
                await wait_for_waiters(gw, 4)  # none fits beside the four answers
                responses = await asyncio.gather(wide, *singles)
    finally:
        await fake.stop()
    assert all(r.status_code == 200 for r in responses)
    events = [json.loads(line[6:]) for line in responses[0].text.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    assert {c["index"] for e in events for c in e["choices"]} == {0, 1, 2, 3}
    assert peak_sequences(fake.requests) <= 4
    finished = fake.by_request_id("wide").finished
    assert finished is not None
    assert all(fake.by_request_id(f"one{i}").started >= finished for i in range(4))

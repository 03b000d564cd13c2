"""A chat the replica accepted just before SIGTERM runs to its end within the grace period.

A rolling restart sends SIGTERM while requests are still arriving: one may have passed the
drain guard and be storing its turn when the drain begins, with no engine request in flight
yet. The drain waited only for engine requests, so with nothing else running it ended at
once, and uvicorn's last second and a half cut the chat in mid-stream (found here: cut at
event 33 of 64 with a 20 s grace period). ``Drain.admitted`` holds the drain for such a
request; ``middleware.DrainGuard`` enters it for the requests it lets in.
The live case is made deterministic with a PostgreSQL row lock: the chat waits on its
conversation's row while SIGTERM arrives, and goes on once the lock is released.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from chatgate.shutdown import Drain, ShutdownBudget
from tests.conftest import PG_HOST, PG_PORT, require_service
from tests.e2e.harness import ADMIN_PASSWORD, Served
from tests.fakes.upstream import FakeUpstream
from tests.fleet import cluster
from tests.fleet.clients import MODEL, Stream, auth
from tests.fleet.clients import until as poll
from tests.fleet.cluster import Fleet, FleetConfig

pytestmark = pytest.mark.timeout(120)

GRACE_SECONDS = 20  # the stream below (3 s) fits well within it


@pytest_asyncio.fixture
async def replica(tmp_path: Path) -> AsyncIterator[tuple[Served, str]]:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    engine = FakeUpstream(model=MODEL)
    await engine.start()
    name, database_url = await cluster.create_database()
    config = FleetConfig(
        f"{MODEL}={engine.url}/v1",
        database_url,
        None,
        f"drain-{uuid.uuid4().hex[:8]}",
        {"CHATGATE_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS)},
    )
    fleet = Fleet.plan(config, tmp_path, 1)
    try:
        await fleet.start(None)
        yield fleet.replicas[0], cluster.database_dsn(name)
    finally:
        await fleet.stop()
        await engine.stop()
        await cluster.drop_database(name)


async def blocked_on_lock(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
    finally:
        await conn.close()
    return bool(waiting)


async def test_the_drain_waits_for_a_request_let_in_before_it() -> None:
    drain = Drain(ShutdownBudget(10))
    entered, release = asyncio.Event(), asyncio.Event()

    async def request() -> None:
        with drain.admitted():  # let in by the guard, still storing its turn
            entered.set()
            await release.wait()
            with drain.track():  # it reaches its engine after the drain began
                pass

    task = asyncio.create_task(request())
    await entered.wait()
    running = asyncio.create_task(drain.run())
    for _ in range(5):
        await asyncio.sleep(0)
    assert drain.draining and drain.busy and not running.done()
    release.set()
    await asyncio.wait_for(running, 10)
    await task
    assert not drain.busy and not drain.interrupted


@pytest.mark.e2e
@pytest.mark.postgres
async def test_a_chat_admitted_before_sigterm_streams_to_its_end(
    replica: tuple[Served, str],
) -> None:
    served, dsn = replica
    assert served.process is not None
    token = await asyncio.to_thread(served.token, "admin", ADMIN_PASSWORD)
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
        first = await client.post(
            "/api/chat", json={"model": MODEL, "message": "hi"}, headers=auth(token)
        )
        conversation = first.text.split('"conversation_id":"', 1)[1].split('"', 1)[0]
        lock = await asyncpg.connect(dsn)
        transaction = lock.transaction()
        await transaction.start()
        await lock.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", conversation)
        body = {
            "model": MODEL,
            "conversation_id": conversation,
            "message": "[[chunks=60 delay=0.05]] admitted just before SIGTERM",
        }
        stream = Stream(route=served.url)

        async def chat() -> None:
            async with client.stream(
                "POST", "/api/chat", json=body, headers=auth(token)
            ) as response:
                await stream.read(response, None)

        task = asyncio.create_task(chat())
        try:
            await poll(lambda: blocked_on_lock(dsn), timeout=30)  # admitted, storing its turn
            served.process.send_signal(signal.SIGTERM)

            async def draining() -> bool:
                try:
                    ready = await client.get("/health/ready")
                except httpx.TransportError:
                    return True  # already past the drain: the listener is closed
                return ready.status_code == 503

            await poll(draining, timeout=30)
        finally:
            await transaction.rollback()
            await lock.close()
        await asyncio.wait_for(task, 60)
    code = await asyncio.to_thread(served.process.wait, GRACE_SECONDS + 20)
    served.process = None
    assert code == 0
    assert stream.status == 200, stream.body
    assert stream.broken is None and stream.done is not None, (stream.ids[-3:], stream.broken)
    assert stream.done["status"] == "complete"
    assert stream.ids == list(range(1, len(stream.ids) + 1))

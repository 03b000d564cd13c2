"""A live fleet: three ``chatgate serve`` replicas (one PostgreSQL database, one Redis prefix,
one fake engine) behind a real nginx ``upstream`` with plain round-robin. Every client
request goes through nginx; replicas are reached directly only to look (is a key refused
there?) and are killed or restarted as an operator would.

- a reload resumes on another replica with every event exactly once;
- stop lands on a replica that does not run the generation and still stops it;
- ``kill -9`` of the owner mid-stream: the reader gets a terminal event within the lease
  bound, the answer is saved ``interrupted`` with its partial text, nothing else changes;
- a fresh replica starting while an answer streams leaves it alone;
- a revoked key is refused by every replica within 1 s;
- a rolling restart (SIGTERM one at a time) under 20 concurrent streams: no request fails
  before streaming, every answer gets exactly one usage row.

Answer lease ``CHATGATE_ANSWER_LEASE_SECONDS=4`` (the least allowed), so a dead owner's
answer is ended within 4 x 1.5 s; API-key identities are cached 60 s, so only the fleet's
invalidation can explain a refusal within 1 s.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.conftest import PG_HOST, PG_PORT, REDIS_HOST, REDIS_PORT, require_service
from tests.deploy.tooling import require_tool
from tests.e2e.harness import ADMIN_PASSWORD, Served
from tests.fakes.upstream import FakeUpstream
from tests.fleet import cluster
from tests.fleet.clients import MODEL, Stored, Stream, auth, chat, login, resume, steer_away_from
from tests.fleet.clients import until as poll
from tests.fleet.cluster import Fleet, FleetConfig, upstream_of
from tests.helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

LEASE_SECONDS = 4
# Stale `lease` after its last checkpoint (taken at most 2 s before the kill), found by a
# sweep that runs every lease / 2; plus slack for a loaded 2-core machine.
LOST_BOUND_SECONDS = LEASE_SECONDS * 1.5 + 4.0
REVOKE_BOUND_SECONDS = 1.0
GRACE_SECONDS = 20
LOAD_STREAMS = 20


@dataclass
class Live:
    fleet: Fleet
    engine: FakeUpstream
    client: httpx.AsyncClient  # through nginx
    token: str
    stored: Stored


@pytest_asyncio.fixture(scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Live]:
    nginx = require_tool("nginx", "Debian: apt-get install -y nginx")
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    engine = FakeUpstream(model=MODEL)
    await engine.start()
    name, database_url = await cluster.create_database()
    prefix = f"fleet-live-{uuid.uuid4().hex[:8]}"
    config = FleetConfig(
        engine=f"{MODEL}={engine.url}/v1",
        database_url=database_url,
        redis_url=cluster.redis_url(),
        prefix=prefix,
        env={
            "CHATGATE_ANSWER_LEASE_SECONDS": str(LEASE_SECONDS),
            "CHATGATE_IDENTITY_CACHE_SECONDS": "60",
            "CHATGATE_SHUTDOWN_GRACE_SECONDS": str(GRACE_SECONDS),
        },
    )
    fleet = Fleet.plan(config, tmp_path_factory.mktemp("fleet"), 3)
    try:
        await fleet.start(nginx)
        assert fleet.nginx is not None
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(base_url=fleet.nginx.url, timeout=60, limits=limits) as client:
            token = await login(client, ADMIN_PASSWORD)
            yield Live(fleet, engine, client, token, Stored(cluster.database_dsn(name)))
    finally:
        await fleet.stop()
        await engine.stop()
        await cluster.drop_database(name)
        await cluster.drop_prefix(prefix)


@pytest_asyncio.fixture
async def fleet_up(live: Live) -> Live:
    """Three replicas up before each test, whatever the one before left."""
    await live.fleet.ensure_running()
    return live


async def in_background(
    live: Live, body: dict[str, Any], events: int = 3
) -> tuple[Stream, asyncio.Task[Stream]]:
    """A chat read to its end in a task; returns once ``events`` events arrived."""
    stream = Stream()
    task = asyncio.create_task(chat(live.client, live.token, body, stream=stream))

    async def started() -> bool:
        if task.done():
            task.result()
            raise AssertionError(f"the chat ended early: {stream.status} {stream.body!r}")
        return len(stream.ids) >= events

    await poll(started, timeout=30)
    return stream, task


def contiguous(*parts: Stream) -> list[int]:
    ids = [i for part in parts for i in part.ids]
    assert ids == list(range(1, len(ids) + 1)), ids  # none twice, none missing
    return ids


async def billed_once(live: Live, message_ids: list[int]) -> None:
    """Each answer has exactly one usage row (the writer commits in the background)."""

    async def all_billed() -> dict[int, int] | None:
        counts = await live.stored.usage_counts(message_ids)
        return counts if all(n >= 1 for n in counts.values()) else None

    counts = await poll(all_billed, timeout=30, step=0.2)
    assert set(counts.values()) == {1}, counts


@pytest.mark.timeout(150)  # the first test also starts the fleet
async def test_reload_resumes_on_other_replicas_with_every_event_once(fleet_up: Live) -> None:
    live = fleet_up
    first = await chat(live.client, live.token, {"message": "[[chunks=40 delay=0.1]] reload"}, 5)
    ids = first.first("conversation")
    parts = [first]
    for stop_at in (first.ids[-1] + 8, None):  # two reloads, each on another replica
        previous = parts[-1]
        await steer_away_from(live.client, previous.upstream)
        part = await resume(
            live.client, live.token, ids["generation_id"], previous.ids[-1], stop_at
        )
        assert part.status == 200, part.body
        assert part.upstream != previous.upstream
        parts.append(part)
    assert parts[1].upstream != first.upstream  # the first reload is served from Redis
    contiguous(*parts)
    assert parts[-1].done is not None and parts[-1].done["status"] == "complete"
    stored = await live.stored.message(ids["assistant_message_id"])
    assert stored["status"] == "complete"
    assert "".join(p.text for p in parts) == stored["content"] != ""
    await billed_once(live, [ids["assistant_message_id"]])
    print(f"served by {[p.upstream for p in parts]}")


@pytest.mark.timeout(90)
async def test_stop_from_another_replica(fleet_up: Live) -> None:
    live = fleet_up
    marker = uuid.uuid4().hex
    body = {"message": f"[[chunks=400 delay=0.05]] stop me {marker}"}
    reader, task = await in_background(live, body)
    ids, owner = reader.first("conversation"), reader.upstream
    await steer_away_from(live.client, owner)
    asked = time.time()
    stop = await live.client.post(
        f"/api/chat/{ids['generation_id']}/stop", headers=auth(live.token)
    )
    assert stop.status_code == 200 and stop.json()["stopped"] is True, stop.text
    assert upstream_of(stop) != owner
    record = next(r for r in live.engine.requests if marker in str(r.payload["messages"]))

    async def aborted() -> bool:
        return record.aborted_at is not None

    await poll(aborted, timeout=10)
    assert record.aborted_at is not None
    delay = record.aborted_at - asked
    assert delay < 2.0, delay  # the bound for a stop reaching the owner
    await asyncio.wait_for(task, 30)
    assert reader.ended and reader.done is not None and reader.done["status"] == "interrupted"
    contiguous(reader)
    stored = await live.stored.message(ids["assistant_message_id"])
    assert stored["status"] == "interrupted" and stored["content"] == reader.text
    await billed_once(live, [ids["assistant_message_id"]])
    print(f"stop on {upstream_of(stop)} aborted {owner}'s engine request after {delay:.3f} s")


@pytest.mark.timeout(150)
async def test_owner_killed_mid_stream(fleet_up: Live) -> None:
    live = fleet_up
    before = await live.stored.statuses()
    victim, victim_task = await in_background(live, {"message": "[[chunks=600 delay=0.05]] v"})
    ids, owner = victim.first("conversation"), victim.upstream
    await steer_away_from(live.client, owner)
    bystander, bystander_task = await in_background(
        live, {"message": "[[chunks=300 delay=0.05]] bystander"}
    )
    assert bystander.upstream != owner
    message_id = ids["assistant_message_id"]

    async def checkpointed() -> bool:
        return bool((await live.stored.message(message_id))["content"])

    await poll(checkpointed, timeout=30)
    await asyncio.to_thread(cluster.kill_hard, live.fleet.at(owner))
    killed = time.monotonic()
    await asyncio.wait_for(victim_task, 30)  # its connection to the owner broke
    assert victim.done is None
    # The client reloads, as the web UI does when a stream breaks: nginx skips the dead one.
    rest = await resume(live.client, live.token, ids["generation_id"], victim.ids[-1])
    assert rest.status == 200 and rest.upstream != owner and rest.ended_at is not None
    waited = rest.ended_at - killed
    assert waited < LOST_BOUND_SECONDS, waited
    error, done = rest.events[-2:]
    assert error.event == "error" and error.data["error"]["code"] == "generation_lost"
    assert done.event == "done" and done.data["status"] == "interrupted"
    contiguous(victim, rest)
    stored = await live.stored.message(message_id)
    assert stored["status"] == "interrupted" and stored["content"]
    assert (victim.text + rest.text).startswith(stored["content"])
    # Nothing else was touched: the bystander streamed on, earlier answers kept their state.
    await asyncio.wait_for(bystander_task, 60)
    assert bystander.done is not None and bystander.done["status"] == "complete"
    contiguous(bystander)
    bystander_id = bystander.first("conversation")["assistant_message_id"]
    assert (await live.stored.message(bystander_id))["content"] == bystander.text
    after = await live.stored.statuses()
    assert {m: after[m] for m in before} == before
    await billed_once(live, [message_id, bystander_id])
    print(f"kill -9 of {owner}: terminal event through {rest.upstream} after {waited:.2f} s")


@pytest.mark.timeout(120)
async def test_fresh_replica_starting_leaves_a_running_answer_alone(
    fleet_up: Live, tmp_path: Path
) -> None:
    live = fleet_up
    reader, task = await in_background(live, {"message": "[[chunks=400 delay=0.05]] keep on"})
    ids = reader.first("conversation")
    fresh = cluster.make_replica(live.fleet.config, tmp_path / "fresh", free_port())
    try:
        await asyncio.to_thread(fresh.start)  # ready: its start-up and first sweep are done
        assert not task.done(), "the answer ended before the fresh replica was up"
        stored = await live.stored.message(ids["assistant_message_id"])
        assert stored["status"] == "pending"
        # The fresh replica serves the running answer too (from Redis).
        follow = await direct_resume(fresh, live.token, ids["generation_id"])
        await asyncio.wait_for(task, 60)
    finally:
        await asyncio.to_thread(fresh.stop)
    assert reader.done is not None and reader.done["status"] == "complete"
    assert not reader.named("error")
    contiguous(reader)
    assert follow.ids == reader.ids and follow.text == reader.text
    stored = await live.stored.message(ids["assistant_message_id"])
    assert stored["status"] == "complete" and stored["content"] == reader.text
    await billed_once(live, [ids["assistant_message_id"]])


async def direct_resume(replica: Served, token: str, generation_id: str) -> Stream:
    """Follow a generation from its start on one replica, bypassing nginx."""
    stream = Stream(route=replica.url.removeprefix("http://"))
    headers = {**auth(token), "Last-Event-ID": "0"}
    url = f"{replica.url}/api/chat/{generation_id}/stream"
    async with (
        httpx.AsyncClient(timeout=60) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        await stream.read(response, None)
    return stream


@pytest.mark.timeout(60)
async def test_revoked_key_is_refused_by_every_replica_within_a_second(fleet_up: Live) -> None:
    live = fleet_up
    created = await live.client.post("/api/keys", json={"name": "fleet"}, headers=auth(live.token))
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    replicas = live.fleet.replicas
    async with httpx.AsyncClient(timeout=10) as direct:
        for replica in replicas:  # every replica caches the key's identity (60 s)
            seen = await direct.get(replica.url + "/v1/models", headers=auth(key))
            assert seen.status_code == 200, seen.text
        revoked = await live.client.delete(f"/api/keys/{key_id}", headers=auth(live.token))
        assert revoked.status_code == 200, revoked.text
        at = time.monotonic()

        async def refused_after(replica: Served) -> float:
            async def refused() -> bool:
                answer = await direct.get(replica.url + "/v1/models", headers=auth(key))
                return answer.status_code == 401

            await poll(refused, timeout=10, step=0.01)
            return time.monotonic() - at

        delays = await asyncio.gather(*(refused_after(r) for r in replicas))
    print(f"revoked through {upstream_of(revoked)}; refused after {[f'{d:.3f}' for d in delays]}")
    assert max(delays) < REVOKE_BOUND_SECONDS, delays


@dataclass
class Load:
    """``LOAD_STREAMS`` users, each chatting on in its own conversation through nginx."""

    live: Live
    results: list[Stream]
    stopping: asyncio.Event

    async def user(self, number: int) -> None:
        conversation: str | None = None
        turn = 0
        while not self.stopping.is_set():
            turn += 1
            body: dict[str, Any] = {"message": f"[[chunks=12 delay=0.1]] user {number} turn {turn}"}
            if conversation is not None:
                body["conversation_id"] = conversation
            stream = await chat(self.live.client, self.live.token, body)
            self.results.append(stream)
            if stream.status == 200 and stream.events:
                conversation = stream.first("conversation")["conversation_id"]


async def _back_in_rotation(live: Live, replica: Served) -> bool:
    """nginx sends requests to ``replica`` again. A connection it refused while it
    restarted keeps it out for ``fail_timeout`` and then until one request to it succeeds;
    taking the next replica down before that can leave nginx with no live upstream at all
    (seen once in CI: 250 instant 502s). An orchestrator waits for its load balancer's
    health check the same way before it stops the next instance."""
    response = await live.client.get("/health/ready")
    return response.status_code == 200 and upstream_of(response) == f"127.0.0.1:{replica.port}"


@pytest.mark.timeout(240)
async def test_rolling_restart_under_load(fleet_up: Live) -> None:
    live = fleet_up
    load = Load(live, [], asyncio.Event())
    users = [asyncio.create_task(load.user(n)) for n in range(LOAD_STREAMS)]
    try:
        await poll(lambda: _at_least(load.results, LOAD_STREAMS), timeout=60)
        for replica in live.fleet.replicas:  # one at a time: drained, gone, replaced, ready
            code = await asyncio.to_thread(cluster.terminate, replica, GRACE_SECONDS + 20)
            assert code == 0, replica.log[-1].read_text()[-3000:]
            await asyncio.to_thread(replica.start)
            back = functools.partial(_back_in_rotation, live, replica)
            await poll(back, timeout=30)
        settled = len(load.results) + LOAD_STREAMS
        await poll(lambda: _at_least(load.results, settled), timeout=60)
    finally:
        load.stopping.set()
        await asyncio.wait_for(asyncio.gather(*users), 60)
    results = load.results
    # Refused before a byte streamed: nginx passed every one the draining replicas turned
    # down to another replica, so there are none.
    failed = [(s.status, s.body[:200]) for s in results if s.status != 200 or not s.events]
    assert failed == [], failed
    # Each stream that began went on to its end.
    cut = [(s.upstream, s.ids[-1], s.broken) for s in results if s.done is None]
    assert cut == [], cut
    for stream in results:
        contiguous(stream)
        assert stream.done is not None and stream.done["status"] == "complete", stream.done
    answers = [s.first("conversation")["assistant_message_id"] for s in results]
    await billed_once(live, answers)
    retried = sum("," in s.route for s in results)
    print(f"rolling restart: {len(results)} streams, {retried} retried by nginx, 0 failed")
    # The whole run: every finished answer billed once, none left pending.
    assert await live.stored.unbilled_answers() == []
    assert "pending" not in (await live.stored.statuses()).values()


async def _at_least(results: list[Stream], count: int) -> bool:
    return len(results) >= count

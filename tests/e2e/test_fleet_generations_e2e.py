"""Two `chatgate serve` replicas sharing one PostgreSQL and one Redis, in front of one
fake engine, behave as one for web-chat generations:

- a chat started on A and resumed on B with ``Last-Event-ID`` has no duplicated or
  missing event, and its text is the stored answer;
- a second chat in the same conversation on B while A generates is refused (409);
- stop on B aborts A's engine request within 2 s, the answer saved ``interrupted``;
- ``kill -9`` of A while a client follows on B: the client gets the terminal
  ``generation_lost`` error and ``done`` (``interrupted``) within the lease bound, and
  the answer keeps its checkpointed text.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from tests.conftest import (
    PG_HOST,
    PG_PORT,
    REDIS_HOST,
    REDIS_PORT,
    create_pg_database,
    drop_pg_database,
    require_service,
)
from tests.e2e.harness import Served, serve_env
from tests.fakes.upstream import FakeUpstream
from tests.helpers import SSEEvent, free_port, parse_sse, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LEASE_SECONDS = 4.0
# The answer's last checkpoint is at most 2 s old when its gateway dies; it is stale
# `lease` after that checkpoint, and a sweeper pass comes every lease/2.
LOST_BOUND_SECONDS = LEASE_SECONDS * 1.5 + 4.0  # + slack for a loaded 2-core machine


@pytest_asyncio.fixture
async def fleet(tmp_path: Path, engine: FakeUpstream) -> AsyncIterator[tuple[Served, Served]]:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    database = await create_pg_database()
    prefix = f"e2e-gen-{uuid.uuid4().hex[:8]}"
    replicas: list[Served] = []
    try:
        for name in ("a", "b"):
            data_dir = tmp_path / name
            data_dir.mkdir()
            env = serve_env(
                data_dir,
                free_port(),
                f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{database}",
            )
            env.update(
                CHATGATE_REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
                CHATGATE_REDIS_PREFIX=prefix,
                CHATGATE_JWT_SECRET="fleet-e2e-" + "s" * 40,
                CHATGATE_ANSWER_LEASE_SECONDS=str(int(LEASE_SECONDS)),
                CHATGATE_RATELIMIT_DEFAULTS='{"user": {}, "admin": {}}',
            )
            args = ["--no-embedded", "--engine", f"fake-model={engine.url}/v1"]
            served = Served(data_dir, int(env["CHATGATE_PORT"]), env, args=args)
            await asyncio.to_thread(served.start)
            replicas.append(served)
        yield replicas[0], replicas[1]
    finally:
        for served in replicas:
            await asyncio.to_thread(served.stop)
        await drop_pg_database(database)
        redis = Redis(host=REDIS_HOST, port=REDIS_PORT)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


class Reader:
    """One SSE client: its events, and the time it saw the last one."""

    def __init__(self) -> None:
        self.events: list[SSEEvent] = []
        self.ended_at: float | None = None

    def first(self, name: str) -> Any:
        return next(e.data for e in self.events if e.event == name)

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events if e.id is not None]

    async def read(self, response: httpx.Response, until: int | None = None) -> None:
        assert response.status_code == 200, await response.aread()
        buffer = ""
        async for piece in response.aiter_text():
            buffer += piece
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                self.events += parse_sse(block + "\n\n")
            if until is not None and self.ids and self.ids[-1] >= until:
                return
        self.ended_at = time.monotonic()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def start_chat(
    client: httpx.AsyncClient, gateway: Served, token: str, body: dict[str, Any], until: int
) -> Reader:
    """POST /api/chat on ``gateway``; read until event ``until``, then hang up."""
    reader = Reader()
    body = {"model": "fake-model", **body}
    url = gateway.url + "/api/chat"
    async with client.stream("POST", url, json=body, headers=auth(token)) as response:
        await reader.read(response, until=until)
    return reader


async def follow(
    client: httpx.AsyncClient, gateway: Served, token: str, generation: str, after: int
) -> Reader:
    reader = Reader()
    url = f"{gateway.url}/api/chat/{generation}/stream"
    headers = {**auth(token), "Last-Event-ID": str(after)}
    async with client.stream("GET", url, headers=headers) as response:
        await reader.read(response)
    return reader


async def answer(client: httpx.AsyncClient, gateway: Served, token: str, ids: Any) -> Any:
    url = f"{gateway.url}/api/conversations/{ids['conversation_id']}"
    messages = (await client.get(url, headers=auth(token))).json()["messages"]
    return next(m for m in messages if m["id"] == ids["assistant_message_id"])


async def until(check: Any, timeout: float = 30) -> Any:
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.05)
    return found


async def test_generations_are_shared_by_two_replicas(
    fleet: tuple[Served, Served], engine: FakeUpstream
) -> None:
    a, b = fleet
    token = await asyncio.to_thread(a.token)
    async with httpx.AsyncClient(timeout=60) as client:
        await resume_on_another_replica(client, a, b, token)
        await one_generation_per_conversation_and_stop(client, a, b, token, engine)
        await owner_killed_while_another_replica_follows(client, a, b, token)


async def resume_on_another_replica(
    client: httpx.AsyncClient, a: Served, b: Served, token: str
) -> None:
    body = {"message": "[[chunks=30 delay=0.1]] resume me"}
    first = await start_chat(client, a, token, body, until=6)
    ids = first.first("conversation")
    rest = await follow(client, b, token, ids["generation_id"], after=first.ids[-1])
    assert first.ids + rest.ids == list(range(1, rest.ids[-1] + 1))  # none twice, none missing
    assert rest.first("done")["status"] == "complete"
    stored = await answer(client, b, token, ids)
    assert stored["status"] == "complete"
    assert text_of(first.events) + text_of(rest.events) == stored["content"] != ""


async def one_generation_per_conversation_and_stop(
    client: httpx.AsyncClient, a: Served, b: Served, token: str, engine: FakeUpstream
) -> None:
    marker = uuid.uuid4().hex
    body = {"message": f"[[chunks=300 delay=0.05]] stop me {marker}"}
    started = await start_chat(client, a, token, body, until=3)
    ids = started.first("conversation")
    again = {"message": "a second one", "conversation_id": ids["conversation_id"]}
    refused = await client.post(b.url + "/api/chat", json=again, headers=auth(token))
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "generation_running"
    detail = await client.get(
        f"{b.url}/api/conversations/{ids['conversation_id']}", headers=auth(token)
    )
    assert detail.json()["active_generation_id"] == ids["generation_id"]  # running on A
    follower = asyncio.create_task(follow(client, b, token, ids["generation_id"], 0))
    stop_url = f"{b.url}/api/chat/{ids['generation_id']}/stop"
    stopped_at = time.time()
    stop = await client.post(stop_url, headers=auth(token))
    assert stop.status_code == 200 and stop.json()["stopped"] is True
    record = next(r for r in engine.requests if marker in str(r.payload["messages"]))

    async def aborted() -> bool:
        return record.aborted_at is not None

    await until(aborted, timeout=10)
    assert record.aborted_at is not None and record.aborted_at - stopped_at < 2.0
    print(f"stop on B: A's engine request aborted after {record.aborted_at - stopped_at:.3f} s")
    followed = await asyncio.wait_for(follower, 30)
    assert followed.first("done")["status"] == "interrupted"
    stored = await answer(client, b, token, ids)
    assert stored["status"] == "interrupted"
    assert stored["content"] == text_of(followed.events)
    # The lock went with the answer: the next turn is taken on either replica.
    quick = {**again, "message": "[[chunks=2]] next"}
    after = await start_chat(client, b, token, quick, until=10**6)
    assert after.first("done")["status"] == "complete"


async def owner_killed_while_another_replica_follows(
    client: httpx.AsyncClient, a: Served, b: Served, token: str
) -> None:
    body = {"message": "[[chunks=600 delay=0.05]] a long one"}
    started = await start_chat(client, a, token, body, until=3)
    ids = started.first("conversation")
    follower = asyncio.create_task(follow(client, b, token, ids["generation_id"], 0))

    async def checkpointed() -> bool:
        return bool((await answer(client, b, token, ids))["content"])

    await until(checkpointed)
    assert a.process is not None
    os.killpg(a.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    await asyncio.to_thread(a.process.wait, 30)
    a.process = None
    followed = await asyncio.wait_for(follower, 60)
    assert followed.ended_at is not None
    waited = followed.ended_at - killed
    assert waited < LOST_BOUND_SECONDS, waited
    error, done = followed.events[-2:]
    assert error.event == "error" and error.data["error"]["code"] == "generation_lost"
    assert done.event == "done" and done.data["status"] == "interrupted"
    assert followed.ids == list(range(1, followed.ids[-1] + 1))
    stored = await answer(client, b, token, ids)
    assert stored["status"] == "interrupted"
    assert stored["content"] and text_of(followed.events).startswith(stored["content"])
    print(f"kill -9 of the owner: terminal event on the other replica after {waited:.2f} s")

"""Nothing served is lost when the database goes away or the gateway is killed.

A real `chatgate serve` on a private PostgreSQL (its own cluster on a free port, stopped
and started here) in front of the fake engine, whose answers are slow enough to outlive
the faults:

- PostgreSQL stopped for 20 s while five /v1 streams and a web chat answer: every client
  gets its whole answer and its end marker; requests that need the database meanwhile get
  503 ``database_unavailable`` with Retry-After; after recovery every request has exactly
  one usage row and the web answer its full text.
- ``kill -9`` of the gateway mid-answer, during an outage: after restart the answer that
  finished during the outage (journaled) is replayed exactly once, the one cut by the
  kill is ``interrupted`` with its text up to the last checkpoint (at most ~2 s missing),
  and a /v1 stream cut by the kill is billed ``interrupted`` with the tokens it had sent.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.e2e.harness import Served, serve_env
from tests.fakes.upstream import FakeUpstream
from tests.helpers import free_port, parse_sse
from tests.pg_private import PrivatePostgres, private_postgres

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

OUTAGE_SECONDS = 20.0
LONG = "[[chunks=60 delay=0.25]] tell me a long story"  # ~15 s of answer
SHORT = "[[chunks=20 delay=0.25]] and a short one"  # ~5 s


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    with private_postgres() as server:
        yield server


async def start_served(
    tmp_path: Path, postgres: PrivatePostgres, engine: FakeUpstream
) -> tuple[Served, str, str]:
    """A gateway on the private database; (served, web token, API key)."""
    if not await _pg_up(postgres):
        await asyncio.to_thread(postgres.start)
    database = f"db_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres")
    await conn.execute(f'CREATE DATABASE "{database}"')
    await conn.close()
    url = postgres.url.rsplit("/", 1)[0] + f"/{database}"
    env = serve_env(tmp_path, free_port(), url)
    env["CHATGATE_ANSWER_LEASE_SECONDS"] = "6"
    env["CHATGATE_RATELIMIT_DEFAULTS"] = '{"user": {}, "admin": {}}'
    args = ["--no-embedded", "--engine", f"fake-model={engine.url}/v1"]
    served = Served(tmp_path, int(env["CHATGATE_PORT"]), env, args=args)
    await asyncio.to_thread(served.start)
    try:
        token = await asyncio.to_thread(served.token)
        create = ("keys", "create", "--user", "admin", "--name", "outage")
        key = (await asyncio.to_thread(served.cli, *create)).split()[-1]
    except BaseException:
        await asyncio.to_thread(served.stop)
        raise
    return served, token, key


async def _pg_up(postgres: PrivatePostgres) -> bool:
    try:
        conn = await asyncpg.connect(
            f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres", timeout=5
        )
    except (OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


@dataclass
class Answer:
    text: str = ""
    ended: bool = False  # [DONE] (/v1) or the `done` event (web chat)
    status: str | None = None
    seen: list[tuple[float, int]] = field(default_factory=list)  # (time, characters so far)


async def v1_stream(
    client: httpx.AsyncClient, key: str, request_id: str, out: Answer, content: str = LONG
) -> None:
    body = {"model": "fake-model", "stream": True,
            "messages": [{"role": "user", "content": content}]}  # fmt: skip
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": request_id}
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200, await r.aread()
        async for line in r.aiter_lines():
            if line == "data: [DONE]":
                out.ended = True
            elif '"content":"' in line.replace(" ", ""):
                out.text += line  # presence of content is what counts here


async def web_chat(
    client: httpx.AsyncClient, token: str, out: Answer, content: str = LONG
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"message": content, "model": "fake-model"}
    async with client.stream("POST", "/api/chat", json=body, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        buffer = ""
        async for piece in response.aiter_text():
            buffer += piece
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                for event in parse_sse(block + "\n\n"):
                    _web_event(event.event, event.data, out)


def _web_event(name: str, data: object, out: Answer) -> None:
    if name == "message" and isinstance(data, dict):
        for choice in data.get("choices") or []:
            out.text += (choice.get("delta") or {}).get("content") or ""
        out.seen.append((time.monotonic(), len(out.text)))
    elif name == "conversation" and isinstance(data, dict):
        out.status = str(data.get("assistant_message_id"))
    elif name == "done" and isinstance(data, dict):
        out.ended = data.get("status") == "complete"


async def until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the streams did not start"
        await asyncio.sleep(0.1)


async def wait_for(check: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.5)
    raise AssertionError("timed out waiting for the database to catch up")


async def rows_of(served: Served, request_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(served.env["CHATGATE_DATABASE_URL"].replace("+asyncpg", ""))
    try:
        return list(await conn.fetch("SELECT * FROM requests WHERE request_id = $1", request_id))
    finally:
        await conn.close()


async def message(served: Served, message_id: str) -> asyncpg.Record:
    conn = await asyncpg.connect(served.env["CHATGATE_DATABASE_URL"].replace("+asyncpg", ""))
    try:
        record = await conn.fetchrow("SELECT * FROM messages WHERE id = $1", int(message_id))
    finally:
        await conn.close()
    assert record is not None
    return record


async def test_a_database_outage_loses_no_row_and_no_answer(
    tmp_path: Path, postgres: PrivatePostgres, engine: FakeUpstream
) -> None:
    served, token, key = await start_served(tmp_path, postgres, engine)
    try:
        ids = [f"outage-{uuid.uuid4().hex[:12]}" for _ in range(5)]
        answers = [Answer() for _ in ids]
        web = Answer()
        async with httpx.AsyncClient(base_url=served.url, timeout=180) as client:
            tasks = [
                asyncio.create_task(v1_stream(client, key, i, a))
                for i, a in zip(ids, answers, strict=True)
            ]
            tasks.append(asyncio.create_task(web_chat(client, token, web)))
            await until(lambda: bool(web.text and all(a.text for a in answers)))
            await asyncio.to_thread(postgres.stop)
            stopped = time.monotonic()
            headers = {"Authorization": f"Bearer {token}"}
            refused = await client.post("/api/chat", json={"message": "hi"}, headers=headers)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "database_unavailable"
            assert int(refused.headers["retry-after"]) > 0
            listed = await client.get("/api/conversations", headers=headers)
            assert listed.status_code == 503 and listed.headers["retry-after"]
            ready = await client.get("/health/ready")
            assert ready.status_code == 503 and ready.json()["unavailable"] == ["database"]
            await asyncio.gather(*tasks)  # every client got its whole answer meanwhile
            assert all(a.ended for a in answers) and web.ended
            await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        await asyncio.to_thread(postgres.start)

        async def caught_up() -> bool:
            return all([len(await rows_of(served, i)) == 1 for i in ids])

        await wait_for(caught_up)
        assert web.status is not None
        stored = await message(served, web.status)
        assert stored["status"] == "complete" and stored["content"] == web.text
        assert len(await rows_of(served, stored["request_id"])) == 1
        log = served.log[-1].read_text()
        assert log.count("database unavailable") <= 3, "one line per outage, not per request"
        assert "Traceback" not in log
    finally:
        await asyncio.to_thread(served.stop)


async def test_kill_9_mid_answer_keeps_the_text_and_replays_once(
    tmp_path: Path, postgres: PrivatePostgres, engine: FakeUpstream
) -> None:
    served, token, key = await start_served(tmp_path, postgres, engine)
    web, short, api = Answer(), Answer(), Answer()
    api_id = f"cut-{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=served.url, timeout=180) as client:
        chat = asyncio.create_task(web_chat(client, token, web))
        relay = asyncio.create_task(v1_stream(client, key, api_id, api))
        await until(lambda: len(web.seen) >= 8)  # a checkpoint in the database
        quick = asyncio.create_task(web_chat(client, token, short, SHORT))
        await until(lambda: bool(short.seen))
        await asyncio.to_thread(postgres.stop)
        # Finished during the outage: its answer and usage row exist only in the journal
        # when the gateway dies.
        await quick
        assert short.ended
        await asyncio.sleep(4.5)  # the long answer's checkpoints now go to the journal too
        assert served.process is not None
        os.killpg(served.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        served.process.wait(timeout=30)
        served.process = None
        await asyncio.gather(chat, relay, return_exceptions=True)  # cut: the gateway is gone
    await asyncio.to_thread(postgres.start)
    await asyncio.to_thread(served.start)  # replays the dead gateway's journal
    try:
        assert short.status is not None and web.status is not None
        replayed = await message(served, short.status)
        assert replayed["status"] == "complete" and replayed["content"] == short.text
        assert len(await rows_of(served, replayed["request_id"])) == 1

        async def ended() -> bool:
            return (await message(served, web.status or "0"))["status"] == "interrupted"

        await wait_for(ended)
        stored = await message(served, web.status)
        assert web.text.startswith(stored["content"])
        before = max([n for t, n in web.seen if t <= killed - 2.5] or [0])
        assert len(stored["content"]) >= before > 0, (len(stored["content"]), before)
        rows = await rows_of(served, stored["request_id"])
        assert [(r["status"], r["record_key"]) for r in rows] == [
            ("interrupted", f"message:{web.status}")
        ]
        # The /v1 stream cut by the kill is billed as far as it got (its last snapshot).
        cut = await rows_of(served, api_id)
        assert [r["status"] for r in cut] == ["interrupted"] and cut[0]["completion_tokens"] > 0
        assert api.text and not api.ended
        await asyncio.to_thread(served.stop)
        await asyncio.to_thread(served.start)  # nothing is replayed twice
        assert len(await rows_of(served, replayed["request_id"])) == 1
        assert not list((tmp_path / "journal").glob("*.jsonl"))
    finally:
        await asyncio.to_thread(served.stop)

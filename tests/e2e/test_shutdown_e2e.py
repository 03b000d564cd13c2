"""Acceptance (issue 14, item 4): SIGTERM to `chatgate serve` with a 10 s grace period
while a /v1 stream and a web-chat answer that would take 60 s are running.

Right after the signal, readiness answers 503 on a fresh connection and a new request
gets 503 ``server_shutting_down`` with Retry-After, while both streams go on. At the
deadline (grace less its margin) both end with a ``server_shutting_down`` error event
(the /v1 stream then ``[DONE]``), the usage rows say ``interrupted``/503, the web-chat
message is saved ``interrupted`` with the text streamed so far, and the process exits
within the grace period.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from chatgate.db.models import Message, RequestLog
from chatgate.shutdown import SHUTTING_DOWN, ShutdownBudget
from tests.conftest import PG_HOST, PG_PORT, create_pg_database, drop_pg_database
from tests.e2e.harness import ADMIN_PASSWORD, Served, serve_env
from tests.fakes.upstream import FakeUpstream
from tests.helpers import SSEEvent, free_port, parse_sse, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

GRACE = 10.0
MODEL = "fake-model"
SIXTY_SECONDS = "[[chunks=1200 delay=0.05]] Tell me a long story."


@dataclass
class Setup:
    served: Served
    database_url: str


# One process, and --workers 2 (uvicorn's supervisor passes SIGTERM on to each worker).
@pytest_asyncio.fixture(params=["sqlite", "postgres", "postgres-2-workers"])
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    engine = FakeUpstream(model=MODEL)
    await engine.start()
    backend, _, workers = str(request.param).partition("-")
    pg_name = await create_pg_database() if backend == "postgres" else None
    url = (
        f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{pg_name}"
        if pg_name
        else f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}"
    )
    port = free_port()
    env = serve_env(tmp_path, port, url)
    env.update(
        CHATGATE_SHUTDOWN_GRACE_SECONDS=str(GRACE),
        CHATGATE_DEFAULT_MODEL=MODEL,
        CHATGATE_AUTO_TITLE="false",
        CHATGATE_WORKERS=workers.split("-")[0] or "1",
    )
    served = Served(
        tmp_path, port, env, args=["--no-embedded", "--engine", f"{MODEL}={engine.url}"]
    )
    try:
        # In a thread: the fake engine runs on this loop and must answer while serve starts.
        await asyncio.to_thread(served.start)
        yield Setup(served, url)
    finally:
        await asyncio.to_thread(served.stop)  # if the test failed before it stopped
        await engine.stop()
        if pg_name:
            await drop_pg_database(pg_name)


@dataclass
class Stream:
    """One streamed response, read in the background; when each thing arrived."""

    request_id: str = ""
    events: list[SSEEvent] = field(default_factory=list)
    first_text: asyncio.Event = field(default_factory=asyncio.Event)
    ended_at: float | None = None

    def chars(self) -> int:
        return len(text_of(self.events))

    async def read(self, response: httpx.Response) -> None:
        self.request_id = response.headers["x-request-id"]
        buffer = ""
        async for piece in response.aiter_text():
            buffer += piece
            blocks, _, buffer = buffer.rpartition("\n\n")
            if blocks:
                self.events += parse_sse(blocks + "\n\n")
            if self.chars():
                self.first_text.set()
        self.ended_at = time.monotonic()


async def stream_in_background(
    client: httpx.AsyncClient, path: str, body: dict[str, object], token: str
) -> tuple[Stream, asyncio.Task[None]]:
    stream = Stream()

    async def run() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with client.stream("POST", path, json=body, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            await stream.read(response)

    task = asyncio.create_task(run())
    await asyncio.wait_for(stream.first_text.wait(), 30)
    return stream, task


async def fresh_get(url: str) -> httpx.Response:
    """On a new connection, as a load balancer's probe would."""
    async with httpx.AsyncClient(timeout=5) as probe:
        return await probe.get(url)


async def ready_probe(url: str) -> httpx.Response | None:
    """A readiness probe's answer; None: the connection ended without one, which a load
    balancer counts as a failed probe. (Seen once, in a loaded CI run with two workers,
    on the probe right after SIGTERM; not reproduced in 11 runs, 6 of them under CPU load.)"""
    try:
        return await fresh_get(url + "/health/ready")
    except httpx.TransportError:
        return None


async def login(url: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            url + "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
    response.raise_for_status()
    return str(response.json()["access_token"])


async def stored(
    database_url: str, request_ids: list[str], message_id: int
) -> tuple[dict[str, RequestLog], Message | None]:
    """What the gateway saved, read after it exited."""
    db = create_async_engine(database_url)
    try:
        async with AsyncSession(db) as session:
            query = select(RequestLog).where(RequestLog.request_id.in_(request_ids))
            rows = {row.request_id: row for row in (await session.scalars(query)).all()}
            return rows, await session.get(Message, message_id)
    finally:
        await db.dispose()


async def test_sigterm_cuts_long_streams_short_within_the_grace_period(setup: Setup) -> None:
    served = setup.served
    assert served.process is not None
    token = await login(served.url)
    budget = ShutdownBudget(GRACE)
    async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
        v1, v1_task = await stream_in_background(
            client,
            "/v1/chat/completions",
            {
                "model": MODEL,
                "stream": True,
                "messages": [{"role": "user", "content": SIXTY_SECONDS}],
            },
            token,
        )
        chat, chat_task = await stream_in_background(
            client, "/api/chat", {"message": SIXTY_SECONDS}, token
        )

        sent = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        ready = await ready_probe(served.url)
        while (ready is None or ready.status_code == 200) and time.monotonic() - sent < 5:
            ready = await ready_probe(served.url)  # the signal is asynchronous
        ready_after = time.monotonic() - sent
        assert ready is not None, "no readiness answer within 5 s of SIGTERM"
        assert ready.status_code == 503 and ready.json()["status"] == "shutting_down"
        assert ready_after < 1.0

        refused = await client.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == SHUTTING_DOWN
        assert int(refused.headers["retry-after"]) > 0

        so_far = (v1.chars(), chat.chars())
        await asyncio.wait_for(asyncio.gather(v1_task, chat_task), GRACE + 5)
    exit_code = await asyncio.to_thread(served.process.wait, GRACE + 10)
    exited_after = time.monotonic() - sent
    served.process = None

    # Both streams went on after SIGTERM, then ended at the deadline with the error event.
    assert v1.chars() > so_far[0] and chat.chars() > so_far[1]
    assert v1.ended_at is not None and chat.ended_at is not None
    ended_after = max(v1.ended_at, chat.ended_at) - sent
    assert budget.deadline - 0.5 <= ended_after <= budget.deadline + budget.settle + 1
    assert v1.events[-1].data == "[DONE]"
    assert v1.events[-2].data["error"]["code"] == SHUTTING_DOWN
    assert [e.event for e in chat.events[-2:]] == ["error", "done"]
    assert chat.events[-2].data["error"]["code"] == SHUTTING_DOWN
    assert chat.events[-1].data["status"] == "interrupted"
    assert exit_code == 0 and exited_after <= GRACE + 2

    message_id = chat.events[0].data["assistant_message_id"]
    rows, message = await stored(setup.database_url, [v1.request_id, chat.request_id], message_id)
    for request_id in (v1.request_id, chat.request_id):
        assert (rows[request_id].status, rows[request_id].status_code) == ("interrupted", 503)
    assert message is not None and message.status == "interrupted"
    assert message.content == text_of(chat.events) and len(message.content) > 100
    print(  # the figures docs/reliability.md quotes (pytest -s)
        f"\n[shutdown e2e] grace {GRACE:g}s: ready 503 after {ready_after * 1000:.0f} ms, "
        f"streams ended after {ended_after:.2f}s (deadline {budget.deadline:g}s), "
        f"process exited after {exited_after:.2f}s; streamed {v1.chars()} + {chat.chars()} chars"
    )

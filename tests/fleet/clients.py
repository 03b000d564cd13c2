"""Web-chat clients of a live fleet, through its nginx: SSE reading with the replica that
served each request, reload (resume with ``Last-Event-ID``), steering the round-robin, and
what the fleet saved, read straight from PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from tests.fleet.cluster import UPSTREAM_HEADER, upstream_of
from tests.helpers import SSEEvent, parse_sse, text_of

MODEL = "fake-model"


@dataclass
class Stream:
    """One SSE response: its events, the replica that served it, and how it ended."""

    status: int = 0
    route: str = ""  # nginx's X-Upstream-Addr: every replica it tried, comma-separated
    events: list[SSEEvent] = field(default_factory=list)
    ended: bool = False  # the server ended the response (not the client hanging up)
    ended_at: float | None = None
    broken: str | None = None  # the connection failed mid-stream (its error)
    body: bytes = b""  # a refusal's body

    @property
    def upstream(self) -> str:
        """The replica that served it (the last one nginx tried)."""
        return self.route.split(",")[-1].strip()

    @property
    def ids(self) -> list[int]:
        return [e.id for e in self.events if e.id is not None]

    @property
    def text(self) -> str:
        return text_of(self.events)

    def first(self, name: str) -> Any:
        return next(e.data for e in self.events if e.event == name)

    def named(self, name: str) -> list[Any]:
        return [e.data for e in self.events if e.event == name]

    @property
    def done(self) -> dict[str, Any] | None:
        found = self.named("done")
        return found[-1] if found else None

    async def read(self, response: httpx.Response, until: int | None) -> None:
        """Events until the one numbered ``until`` (then hang up), else to the end."""
        self.status = response.status_code
        self.route = response.headers.get(UPSTREAM_HEADER, self.route)
        if response.status_code != 200:
            self.body = await response.aread()
            return
        buffer = ""
        try:
            async for piece in response.aiter_text():
                buffer += piece
                while "\n\n" in buffer:
                    block, buffer = buffer.split("\n\n", 1)
                    self.events += parse_sse(block + "\n\n")
                if until is not None and self.ids and self.ids[-1] >= until:
                    return
        except httpx.TransportError as exc:
            self.broken = repr(exc)
            return
        self.ended, self.ended_at = True, time.monotonic()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def chat(
    client: httpx.AsyncClient,
    token: str,
    body: dict[str, Any],
    until: int | None = None,
    stream: Stream | None = None,
) -> Stream:
    """``POST /api/chat`` through nginx (into ``stream``, which a test may watch)."""
    stream = stream or Stream()
    payload = {"model": MODEL, **body}
    async with client.stream("POST", "/api/chat", json=payload, headers=auth(token)) as response:
        await stream.read(response, until)
    return stream


async def resume(
    client: httpx.AsyncClient,
    token: str,
    generation_id: str,
    after: int,
    until: int | None = None,
    stream: Stream | None = None,
) -> Stream:
    """A reload: ``GET /api/chat/{id}/stream`` with ``Last-Event-ID`` through nginx."""
    stream = stream or Stream()
    headers = {**auth(token), "Last-Event-ID": str(after)}
    url = f"/api/chat/{generation_id}/stream"
    async with client.stream("GET", url, headers=headers) as response:
        await stream.read(response, until)
    return stream


async def steer_away_from(client: httpx.AsyncClient, address: str) -> None:
    """Probe through nginx until ``address`` answered: round-robin then sends the next
    request to another replica (the caller checks it did)."""
    for _ in range(12):
        probe = await client.get("/health")
        if upstream_of(probe) == address:
            return
    raise AssertionError(f"round-robin never reached {address}")


async def login(client: httpx.AsyncClient, password: str) -> str:
    response = await client.post(
        "/api/auth/login", json={"username": "admin", "password": password}
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


async def until(check: Callable[[], Awaitable[Any]], timeout: float, step: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; that value."""
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(step)
    return found


class Stored:
    """What the fleet saved, read from its PostgreSQL database."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    async def _fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self._dsn)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def message(self, message_id: int) -> asyncpg.Record:
        rows = await self._fetch(
            "SELECT id, status, content, error FROM messages WHERE id = $1", message_id
        )
        return rows[0]

    async def statuses(self) -> dict[int, str]:
        rows = await self._fetch("SELECT id, status FROM messages WHERE role = 'assistant'")
        return {row["id"]: row["status"] for row in rows}

    async def usage_counts(self, message_ids: list[int]) -> dict[int, int]:
        """Usage rows per web answer (its ``record_key`` is ``message:<id>``)."""
        keys = [f"message:{m}" for m in message_ids]
        rows = await self._fetch(
            "SELECT record_key, count(*) AS n FROM requests WHERE record_key = ANY($1::text[]) "
            "GROUP BY record_key",
            keys,
        )
        found = {int(row["record_key"].split(":")[1]): int(row["n"]) for row in rows}
        return {m: found.get(m, 0) for m in message_ids}

    async def unbilled_answers(self) -> list[int]:
        """Finished assistant answers without a usage row."""
        rows = await self._fetch(
            "SELECT m.id FROM messages m WHERE m.role = 'assistant' AND m.status <> 'pending' "
            "AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.record_key = 'message:' || m.id)"
        )
        return [row["id"] for row in rows]

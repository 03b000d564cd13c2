"""Test helpers: an in-loop uvicorn gateway, users and tokens, SSE parsing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx
import pytest
import uvicorn

from chatgate.app import create_app
from chatgate.keys import service as keys
from chatgate.settings import Settings
from chatgate.state import AppState
from chatgate.users import service as users
from tests.fakes.upstream import FakeUpstream

PASSWORD = "correct-horse-battery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SSEEvent:
    id: int | None
    event: str
    data: Any


def parse_sse(text: str) -> list[SSEEvent]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        if "data" not in fields:
            continue
        raw = fields["data"]
        data = raw if raw == "[DONE]" else json.loads(raw)
        event_id = int(fields["id"]) if "id" in fields else None
        events.append(SSEEvent(event_id, fields.get("event", "message"), data))
    return events


def text_of(events: list[SSEEvent]) -> str:
    parts = []
    for event in events:
        if event.event == "message" and isinstance(event.data, dict):
            for choice in event.data.get("choices", []):
                parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


@dataclass
class Account:
    user_id: int
    username: str
    token: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def key_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


@dataclass
class Gateway:
    url: str
    settings: Settings
    upstream: FakeUpstream
    app: Any

    @property
    def state(self) -> AppState:
        state: AppState = self.app.state.chatgate
        return state

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        # plain HTTP on loopback: skip building an (unused) TLS context for every client
        kwargs.setdefault("verify", False)
        kwargs.setdefault("timeout", 30)
        return httpx.AsyncClient(base_url=self.url, **kwargs)

    async def account(self, role: str = "user") -> Account:
        """A new user with a login token and an API key."""
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        async with self.state.sessionmaker() as db:
            user = await users.create_user(db, name, PASSWORD, role=role)
            _, api_key = await keys.create_key(db, user.id, "test key")
        async with self.client() as client:
            response = await client.post(
                "/api/auth/login", json={"username": name, "password": PASSWORD}
            )
            response.raise_for_status()
        return Account(user.id, name, response.json()["access_token"], api_key)

    async def chat(self, account: Account, **body: Any) -> tuple[list[SSEEvent], httpx.Response]:
        async with self.client() as client:
            response = await client.post("/api/chat", json=body, headers=account.headers)
        return parse_sse(response.text), response


@asynccontextmanager
async def start_gateway(
    settings: Settings, upstream: FakeUpstream, **app_options: Any
) -> AsyncIterator[Gateway]:
    app = create_app(settings, **app_options)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    # The test process keeps its own signal handlers.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.025)
    try:
        yield Gateway(f"http://127.0.0.1:{port}", settings, upstream, app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


class FakeClock:
    """A ``time.monotonic`` stand-in that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def missing(message: str) -> NoReturn:
    """Something a test needs is absent: skip with the reason, but under CI=true fail."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{message}, and CI=true requires it")
    pytest.skip(message)

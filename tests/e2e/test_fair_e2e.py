"""End to end, on the real embedded engine: user A floods `chatgate serve`'s llama-server
(two slots here) with six long streams; user B's short request is admitted at the next free
slot, ahead of A's queued ones, and its usage row says how long it waited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.harness import Served, serve_env
from tests.helpers import free_port

pytestmark = pytest.mark.e2e

SLOTS = 2
# SmolLM2's end-of-turn token biased away: each of A's answers runs its full length.
LONG = {"max_tokens": 96, "logit_bias": {"2": -100}}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("e2e-fair")
    env = serve_env(data_dir, free_port(), None)
    env["CHATGATE_EMBEDDED_PARALLEL"] = str(SLOTS)
    env["CHATGATE_RATELIMIT_DEFAULTS"] = '{"user": {}, "admin": {}}'
    instance = Served(data_dir, int(env["CHATGATE_PORT"]), env)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def new_key(served: Served, name: str) -> str:
    served.cli("users", "add", name, "--password", "fair-e2e-password")
    return served.cli("keys", "create", "--user", name, "--name", "e2e").split()[-1]


async def first_token_at(client: httpx.AsyncClient, key: str, body: dict[str, object]) -> float:
    """When the first content arrived (monotonic); the stream is then read to its end."""
    first = 0.0
    async with client.stream(
        "POST",
        "/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "default", "stream": True, **body},
    ) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not first and '"content":"' in line.replace(" ", "") and '"content":""' not in line:
                first = time.monotonic()
    assert first, "no content"
    return first


async def test_a_short_request_is_admitted_before_a_floods_queue(served: Served) -> None:
    key_a, key_b = new_key(served, "flooder"), new_key(served, "neighbour")
    prompt = {"messages": [{"role": "user", "content": "Write a long story about ships."}]}
    async with httpx.AsyncClient(base_url=served.url, timeout=300) as client:
        flood = [
            asyncio.create_task(first_token_at(client, key_a, {**prompt, **LONG}))
            for _ in range(3 * SLOTS)
        ]
        await asyncio.sleep(1.0)  # A's requests are in: two generating, four waiting
        b_sent = time.monotonic()
        b_first = await first_token_at(
            client, key_b, {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8}
        )
        a_firsts = await asyncio.gather(*flood)
    started_before_b = sum(1 for t in a_firsts if t < b_first)
    # B got the slot that freed first: behind the two that were generating and at most one
    # more of A's, never behind all six.
    assert started_before_b <= SLOTS + 1, (started_before_b, b_first - b_sent)
    usage = httpx.get(
        served.url + "/api/usage",
        params={"limit": 50},
        headers={"Authorization": f"Bearer {served.token()}"},
        timeout=60,
    ).json()
    rows = [r for r in usage["rows"] if r["route"] == "v1.chat"]
    assert len(rows) == 3 * SLOTS + 1, rows
    assert all("queue_ms" in r for r in rows)
    assert max(r["queue_ms"] or 0 for r in rows) > 0  # A's last ones waited in the gateway

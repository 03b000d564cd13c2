"""Auto-titles: cleaning the model's answer, and the async update after a first exchange."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from chatgate.chat.titles import clean_title
from chatgate.db import migrate
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import start_gateway


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"Capital of France"', "Capital of France"),
        ("Title: Paris facts.\nmore text", "Paris facts"),
        ("   \n  ", None),
        ("x" * 80, "x" * 59 + "…"),
    ],
)
def test_clean_title(raw: str, expected: str | None) -> None:
    assert clean_title(raw) == expected


async def test_new_conversation_gets_engine_title(tmp_path: Path, upstream: FakeUpstream) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(tmp_path, url, upstream, auto_title=True)
    async with start_gateway(settings, upstream) as gateway:
        account = await gateway.account()
        events, _ = await gateway.chat(account, message="Tell me about France")
        conversation_id = events[0].data["conversation_id"]
        assert events[0].data["title"] == "Tell me about France"
        async with gateway.client() as client:
            for _ in range(100):
                detail = await client.get(
                    f"/api/conversations/{conversation_id}", headers=account.headers
                )
                if detail.json()["title"] != "Tell me about France":
                    break
                await asyncio.sleep(0.05)
    # the fake engine answers every prompt with the same sentence
    assert detail.json()["title"] == "Paris is the capital of France"
    title_request = upstream.requests[-1]
    assert title_request.payload["max_tokens"] == 16
    assert "Tell me about France" in title_request.payload["messages"][0]["content"]

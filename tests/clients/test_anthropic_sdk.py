"""The official ``anthropic`` SDK (a pinned release, in ``.venv-clients``, built by
``make clients-env``, a prerequisite of ``make pytest``) against chatgate: once in front of
the fake engine, whose answers are known, and once end to end through ``chatgate serve``
with the real embedded llama.cpp engine, where only the shapes are the test.

The SDK runs in its own process (``anthropic_client.py``): its venv is not the gateway's.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chatgate.db.models import RequestLog
from tests.clients.harness import new_key, run_client
from tests.e2e.harness import ENGINE_NAME, Served
from tests.helpers import Gateway


@pytest.mark.timeout(300)
async def test_anthropic_sdk_against_the_fake_engine(gateway: Gateway) -> None:
    account = await gateway.account()
    report = await run_client(
        "anthropic_client.py", gateway.url, account.api_key, "fake-model", "strict"
    )
    assert report["version"] == "2.10.0"
    assert report["unauthorized"] == {"status": 401, "type": "authentication_error"}
    assert report["count_tokens"]["source"] == "estimate"  # the fake serves no /tokenize
    assert report["tools"]["called"] and report["tools"]["stop_reason"] == "tool_use"
    async with gateway.state.sessionmaker() as db:
        found = await db.scalars(
            select(RequestLog).where(
                RequestLog.user_id == account.user_id, RequestLog.route == "v1.messages"
            )
        )
        rows = list(found.all())
    # create, stream, the two legs of the tool round trip; count_tokens generates nothing
    assert [row.status for row in rows] == ["ok"] * 4
    usage = report["create"]["usage"]
    first = min(rows, key=lambda row: row.id)
    assert (usage["input_tokens"], usage["output_tokens"]) == (
        first.prompt_tokens,
        first.completion_tokens,
    )


@pytest.mark.e2e
@pytest.mark.timeout(600)
async def test_anthropic_sdk_against_the_embedded_engine(served: Served) -> None:
    key = new_key(served, "admin", "anthropic-sdk")
    report = await run_client("anthropic_client.py", served.url, key, ENGINE_NAME, "loose")
    # llama-server counts with its own tokenizer (/apply-template + /tokenize): the count
    # of create's prompt is what the engine then reported for it.
    assert report["count_tokens"]["source"] == "engine"
    assert report["count_tokens"]["input_tokens"] == report["create"]["usage"]["input_tokens"]
    assert report["create"]["usage"]["output_tokens"] <= 16
    assert report["unauthorized"] == {"status": 401, "type": "authentication_error"}

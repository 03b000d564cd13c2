"""``langchain-openai`` (a pinned release in ``.venv-clients``) against chatgate, sync and
async: ``max_tokens`` (sent as ``max_completion_tokens``) bounds the answer, streaming
reports usage, a ``bind_tools`` round trip, ``with_structured_output`` (json_schema), and
the Responses API with ``use_previous_response_id``. End to end with the real embedded
engine, and in front of the fake engine for exact answers and what it was sent.

The SDK runs every check in one process (``langchain_client.py``); each is one test here.
"""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from tests.clients.harness import check_passed, new_key, run_client
from tests.e2e.harness import ENGINE_NAME, Served
from tests.fakes.upstream import Recorded
from tests.helpers import Gateway

VERSION = "1.8.1"
KINDS = ["sync", "async"]
CHECKS = ["invoke_max_tokens", "stream_usage", "tool_forced", "tool_round_trip",
          "structured_output", "responses_api"]  # fmt: skip
# the async methods differ in their transport: not every feature again
ASYNC_CHECKS = ["invoke_max_tokens", "stream_usage", "tool_round_trip", "structured_output"]
EMBEDDED_CHECKS = [("sync", check) for check in CHECKS] + [("async", c) for c in ASYNC_CHECKS]
# the fake engine writes no JSON for a schema: structured output is the real engine's test
FAKE_CHECKS = [check for check in CHECKS if check != "structured_output"]


@pytest_asyncio.fixture(scope="module")
async def embedded_report(served: Served) -> dict[str, Any]:
    key = new_key(served, "admin", "langchain-openai")
    return await run_client(
        "langchain_client.py", served.url, key, ENGINE_NAME, "loose",
        "async_checks=" + ",".join(ASYNC_CHECKS),
    )  # fmt: skip


@pytest.mark.e2e
@pytest.mark.timeout(600)
async def test_the_pinned_langchain_openai_runs_against_the_embedded_engine(
    embedded_report: dict[str, Any],
) -> None:
    assert embedded_report["version"] == VERSION


@pytest.mark.e2e
@pytest.mark.timeout(600)  # the first one runs the SDK script
@pytest.mark.parametrize(("kind", "check"), EMBEDDED_CHECKS)
async def test_langchain_openai_against_the_embedded_engine(
    embedded_report: dict[str, Any], kind: str, check: str
) -> None:
    check_passed(embedded_report, kind, check)


@pytest_asyncio.fixture(scope="module")
async def fake_run(gateway: Gateway) -> tuple[dict[str, Any], list[Recorded]]:
    account = await gateway.account()
    start = len(gateway.upstream.requests)
    report = await run_client(
        "langchain_client.py", gateway.url, account.api_key, "fake-model", "strict", *FAKE_CHECKS
    )
    return report, gateway.upstream.requests[start:]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("check", FAKE_CHECKS)
@pytest.mark.parametrize("kind", KINDS)
async def test_langchain_openai_against_the_fake_engine(
    fake_run: tuple[dict[str, Any], list[Recorded]], kind: str, check: str
) -> None:
    report, _ = fake_run
    assert report["version"] == VERSION
    check_passed(report, kind, check)


async def test_langchain_max_tokens_reaches_the_engine(
    fake_run: tuple[dict[str, Any], list[Recorded]],
) -> None:
    _, sent = fake_run
    limited = [r.payload for r in sent if "(limit)" in str(r.payload["messages"][-1]["content"])]
    assert len(limited) == 2, limited  # one invoke, one ainvoke
    for payload in limited:
        assert 5 in (payload.get("max_tokens"), payload.get("max_completion_tokens")), payload

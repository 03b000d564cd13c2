"""The official ``openai`` SDK (a pinned release in ``.venv-clients``), sync and async
clients, against chatgate: end to end through ``chatgate serve`` with the real embedded
llama.cpp engine, where shapes, limits and token counts are the test and a 135M model's
words are not; and in front of the fake engine, whose answers are exact and which records
what the gateway sent it.

The SDK runs every check in one process (``openai_client.py``); each check is one test here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.db.models import RequestLog
from tests.clients.harness import check_passed, new_key, run_client
from tests.conftest import _migrated_url as migrated_url
from tests.conftest import gateway_settings
from tests.e2e.harness import ENGINE_NAME, Served
from tests.fakes.upstream import FakeUpstream, Recorded
from tests.helpers import Account, Gateway, start_gateway

VERSION = "3.63.0"
KINDS = ["sync", "async"]
CHAT = ["chat_create", "chat_stream", "token_limits", "stop_and_seed", "n_choices",
        "logprobs", "legacy_completions", "usage_equal"]  # fmt: skip
TOOLS = ["tool_forced", "tool_round_trip", "tool_stream", "structured_parse", "json_schema"]
OTHER = ["errors", "engine_rejection", "models", "embeddings"]
RESPONSES = ["responses_create", "responses_stream", "responses_chain", "responses_stored",
             "responses_tool_forced", "responses_tool_output"]  # fmt: skip
EMBEDDED_CHECKS = {
    "sync": CHAT + TOOLS + OTHER + RESPONSES,
    # the async client differs in its transport: one check of each kind of answer
    "async": ["chat_create", "chat_stream", "tool_round_trip", "structured_parse", "errors",
              "models", "embeddings", "responses_stream", "responses_chain"],
}  # fmt: skip
# The fake engine writes no logprobs, legacy text or JSON: those are the real engine's to
# show (its embeddings come from an 8-dimension profile, ``fake-embed``). Limits, stop and
# seed it ignores: the tests below read what it was sent.
FAKE_CHECKS = ["chat_create", "chat_stream", "token_limits", "stop_and_seed", "n_choices",
               "usage_equal", "tool_forced", "tool_round_trip", "tool_stream", "errors",
               "engine_rejection", "models", "embeddings", *RESPONSES]  # fmt: skip


@pytest_asyncio.fixture(scope="module")
async def embedded_report(served: Served) -> dict[str, Any]:
    key = new_key(served, "admin", "openai-sdk")
    other = new_key(served, "openai-other", "openai-sdk-other")
    return await run_client(
        "openai_client.py", served.url, key, ENGINE_NAME, "loose", f"other_key={other}",
        "async_checks=" + ",".join(EMBEDDED_CHECKS["async"]),
    )  # fmt: skip


@pytest.mark.e2e
@pytest.mark.timeout(600)
async def test_the_pinned_openai_sdk_runs_against_the_embedded_engine(
    embedded_report: dict[str, Any],
) -> None:
    assert embedded_report["version"] == VERSION


@pytest.mark.e2e
@pytest.mark.timeout(600)  # the first one runs the SDK script
@pytest.mark.parametrize(
    ("kind", "check"),
    [(kind, check) for kind, checks in EMBEDDED_CHECKS.items() for check in checks],
)
async def test_openai_sdk_against_the_embedded_engine(
    embedded_report: dict[str, Any], kind: str, check: str
) -> None:
    check_passed(embedded_report, kind, check)


@pytest.mark.e2e
@pytest.mark.timeout(600)
async def test_embeddings_have_the_profiles_dimensions(embedded_report: dict[str, Any]) -> None:
    # smollm2-135m's hidden size, declared by its profile (engines/profiles/smollm2-135m.yaml)
    assert check_passed(embedded_report, "sync", "embeddings")["dimensions"] == 576


@dataclass
class FakeRun:
    report: dict[str, Any]
    sent: list[Recorded]  # what the gateway sent the fake engine meanwhile
    account: Account

    def sent_with(self, marker: str) -> list[dict[str, Any]]:
        """The engine requests whose last message carries ``marker``."""
        return [
            r.payload
            for r in self.sent
            if marker in str((r.payload.get("messages") or [{}])[-1].get("content"))
        ]


EMBEDDING_PROFILE = """id: fake-embed
name: fake-embed
engine: openai
url: {url}
params_b: 0.1
num_layers: 1
num_kv_heads: 1
head_dim: 8
context_length: 2048
max_model_len: 2048
embeddings:
  dimensions: 8
"""


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgres"])
async def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeUpstream,
) -> AsyncIterator[Gateway]:
    """The fake engine as ``fake-model`` (chat) and ``fake-embed`` (a profile declaring
    embeddings), on each database."""
    tmp = tmp_path_factory.mktemp(f"gw-openai-sdk-{request.param}")
    (tmp / "profiles").mkdir()
    (tmp / "profiles" / "embed.yaml").write_text(EMBEDDING_PROFILE.format(url=upstream.url))
    engines = [f"{name}={upstream.url}" for name in ("fake-model", "fake-embed")]
    async for url in migrated_url(request.param, tmp):
        settings = gateway_settings(
            tmp, url, upstream, engines=engines, profiles_dir=tmp / "profiles"
        )
        async with start_gateway(settings, upstream) as gw:
            yield gw


@pytest_asyncio.fixture(scope="module")
async def fake_run(gateway: Gateway) -> FakeRun:
    account, other = await gateway.account(), await gateway.account()
    start = len(gateway.upstream.requests)
    report = await run_client(
        "openai_client.py", gateway.url, account.api_key, "fake-model", "strict",
        *FAKE_CHECKS, f"other_key={other.api_key}", "embedding_model=fake-embed",
    )  # fmt: skip
    return FakeRun(report, gateway.upstream.requests[start:], account)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("check", FAKE_CHECKS)
@pytest.mark.parametrize("kind", KINDS)
async def test_openai_sdk_against_the_fake_engine(fake_run: FakeRun, kind: str, check: str) -> None:
    assert fake_run.report["version"] == VERSION
    check_passed(fake_run.report, kind, check)


async def test_limits_stop_and_seed_reach_the_engine(fake_run: FakeRun) -> None:
    limited = fake_run.sent_with("(limit)")
    # max_tokens and max_completion_tokens, plain and streamed, by both clients
    assert len(limited) == 6, limited
    for payload in limited:
        assert 5 in (payload.get("max_tokens"), payload.get("max_completion_tokens")), payload
    stopped = fake_run.sent_with("(stop)")
    assert stopped and all(payload["stop"] == [" "] for payload in stopped), stopped
    seeded = fake_run.sent_with("(seed)")
    assert len(seeded) == 4 and all(payload["seed"] == 1234 for payload in seeded), seeded


async def test_fake_embeddings_have_the_profiles_dimensions(fake_run: FakeRun) -> None:
    for kind in KINDS:
        assert check_passed(fake_run.report, kind, "embeddings")["dimensions"] == 8


async def test_the_sdk_usage_is_the_usage_row(fake_run: FakeRun, gateway: Gateway) -> None:
    for kind in KINDS:
        seen = check_passed(fake_run.report, kind, "chat_create")
        async with gateway.state.sessionmaker() as db:
            row = await db.scalar(
                select(RequestLog).where(RequestLog.request_id == seen["request_id"])
            )
        assert row is not None and row.user_id == fake_run.account.user_id, seen
        assert row.route == "v1.chat" and row.status == "ok", row
        usage = seen["usage"]
        assert (row.prompt_tokens, row.completion_tokens) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )

"""An embedding-only model (``task: embed``, e.g. vLLM started as a pooling model) behind
the gateway, on the fake engine with ``embedding_only`` (404 to every generation, as a
pooling vLLM answers): the monitor proves it by an embedding, ``/v1/embeddings`` reaches
it, and every generating route refuses its model with a 400 naming ``model`` before any
engine is asked. The real vLLM counterpart is tests/engines/runtime/test_vllm_embeddings_e2e.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.db import migrate
from chatgate.db.models import RequestLog
from chatgate.engines.upstream.endpoint import Endpoint
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream, embedding_of
from tests.helpers import Account, Gateway, start_gateway

EMBEDDER = "fake-vectors"  # the embedding-only model
CHAT = "fake-model"  # a chat model beside it, on its own fake engine
DIMS = 8
REFUSED = "does not support chat completions"


def embed_profile(url: str) -> str:
    """An attached embedding-only engine, declared by its profile (``task: embed``)."""
    return (
        f"id: {EMBEDDER}\nname: Fake vectors\nengine: openai\nurl: {url}\ntask: embed\n"
        "params_b: 0.03\nnum_layers: 1\nnum_kv_heads: 1\nhead_dim: 8\ncontext_length: 512\n"
        f"max_model_len: 512\nembeddings:\n  dimensions: {DIMS}\n"
    )


@pytest_asyncio.fixture(scope="module")
async def pooling() -> AsyncIterator[FakeUpstream]:
    engine = FakeUpstream(model="pool-engine", embedding_only=True, embedding_dims=DIMS)
    await engine.start()
    yield engine
    await engine.stop()


@pytest_asyncio.fixture(scope="module")
async def gw(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream, pooling: FakeUpstream
) -> AsyncIterator[Gateway]:
    tmp = tmp_path_factory.mktemp("gw-embeddings-only")
    profiles = tmp / "profiles"
    profiles.mkdir()
    (profiles / f"{EMBEDDER}.yaml").write_text(embed_profile(pooling.url))
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(
        tmp, url, upstream, engines=[f"{CHAT}={upstream.url}", f"{EMBEDDER}={pooling.url}"],
        profiles_dir=profiles, engine_health_interval=0.1, engine_probe_interval=0.1,
    )  # fmt: skip
    async with start_gateway(settings, upstream) as gateway:
        yield gateway


@pytest_asyncio.fixture(scope="module")
async def account(gw: Gateway) -> Account:
    return await gw.account()


def endpoint_of(gw: Gateway) -> Endpoint:
    (endpoint,) = gw.state.registry.lookup(EMBEDDER).endpoints
    return endpoint


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Wait (bounded) for the gateway's monitor, which checks every 0.1 s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_the_monitor_proves_it_by_an_embedding(gw: Gateway, pooling: FakeUpstream) -> None:
    endpoint = endpoint_of(gw)
    assert endpoint.task == "embed" and endpoint.upstream_model == "pool-engine"
    pooling.forced["status"] = "500"
    try:
        await until(lambda: endpoint.last_error == "a 1-input embedding failed: HTTP 500",
                    "the failing embedding probe")  # fmt: skip
        assert not endpoint.healthy
    finally:
        pooling.forced.clear()
    probes = pooling.probes
    await until(lambda: endpoint.healthy and pooling.probes > probes, "a passing probe")
    assert endpoint.probe_error is None and endpoint.last_error is None
    assert not [r for r in pooling.requests if r.path != "/v1/embeddings"]


async def test_embeddings_are_routed_to_it(
    gw: Gateway, account: Account, pooling: FakeUpstream
) -> None:
    async with gw.client(headers=account.key_headers) as client:
        response = await client.post(
            "/v1/embeddings", json={"model": EMBEDDER, "input": ["one two", "three"]}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == EMBEDDER
    assert [item["embedding"] for item in body["data"]] == [
        embedding_of("one two", DIMS),
        embedding_of("three", DIMS),
    ]
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    request_id = response.headers["x-request-id"]
    sent = pooling.by_request_id(request_id)
    assert (sent.path, sent.payload["model"]) == ("/v1/embeddings", "pool-engine")
    async with gw.state.sessionmaker() as db:
        query = select(RequestLog).where(RequestLog.request_id == request_id)
        for _ in range(300):  # the usage writer is asynchronous
            rows = list((await db.scalars(query)).all())
            if rows:
                break
            await asyncio.sleep(0.02)
    assert [(r.model, r.route, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        (EMBEDDER, "v1.embeddings", 3, 0)
    ]


def openai_refusal(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("model", "model_not_supported"), error
    assert EMBEDDER in error["message"] and REFUSED in error["message"]


async def test_generating_routes_refuse_it(
    gw: Gateway, account: Account, pooling: FakeUpstream
) -> None:
    messages = [{"role": "user", "content": "Hello"}]
    before = len(pooling.requests)
    async with gw.client(headers=account.key_headers) as client:
        for stream in (False, True):
            chat = {"model": EMBEDDER, "messages": messages, "stream": stream}
            openai_refusal(await client.post("/v1/chat/completions", json=chat))
        openai_refusal(await client.post("/v1/completions", json={"model": EMBEDDER,
                                                                  "prompt": "Hello"}))  # fmt: skip
        openai_refusal(await client.post("/v1/responses", json={"model": EMBEDDER,
                                                                "input": "Hello"}))  # fmt: skip
        anthropic = {"model": EMBEDDER, "max_tokens": 8, "messages": messages}
        headers = {"x-api-key": account.api_key, "anthropic-version": "2023-06-01"}
        refused = await client.post("/v1/messages", json=anthropic, headers=headers)
    assert refused.status_code == 400, refused.text
    assert REFUSED in refused.json()["error"]["message"]
    _, web = await gw.chat(account, message="Hello", model=EMBEDDER)
    openai_refusal(web)
    assert len(pooling.requests) == before  # nothing was relayed to the engine


async def test_listings(gw: Gateway, account: Account) -> None:
    async with gw.client(headers=account.headers) as client:
        openai = (await client.get("/v1/models")).json()
        web = (await client.get("/api/models")).json()
    # OpenAI's list names every model, embedding ones included (as OpenAI's does).
    assert {m["id"] for m in openai["data"]} == {CHAT, EMBEDDER}
    # The web chat's list offers only what it can chat with; its default is the chat model.
    tasks: dict[str, Any] = {m["id"]: m["task"] for m in web["models"]}
    assert tasks == {CHAT: "generate"}
    assert web["default"] == CHAT

"""``POST /v1/embeddings`` against the fake engine: OpenAI's shapes, the checks of every
input form, models without embeddings, ``dimensions``, base64, engine failures and
failover, the usage row of each request, and the limits."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.auth.passwords import hash_password
from chatgate.db import migrate
from chatgate.db.models import RequestLog, User
from chatgate.engines.runtime.embedded import (
    EngineSetupError,
    locate_llama_server,
    locate_smollm2_gguf,
)
from chatgate.keys import service as keys
from chatgate.limits import admin
from chatgate.openai_api.embeddings_request import MAX_INPUTS
from tests.conftest import Pair, gateway_settings
from tests.e2e.harness import ENGINE_NAME, Served, serve_env
from tests.fakes.upstream import FakeUpstream, embedding_of
from tests.helpers import Gateway, free_port, missing, start_gateway

_HASH = hash_password("unused-password-123")
DIMS = 8


def profile_yaml(model_id: str, url: str, embeddings: str) -> str:
    """An attached OpenAI-compatible engine whose profile declares embeddings."""
    return (
        f"id: {model_id}\nname: {model_id}\nengine: openai\nurl: {url}\nparams_b: 0.1\n"
        "num_layers: 1\nnum_kv_heads: 1\nhead_dim: 8\ncontext_length: 2048\n"
        f"max_model_len: 2048\nembeddings:\n{embeddings}"
    )


@pytest_asyncio.fixture(scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> AsyncIterator[Gateway]:
    """``fake-embed`` (8 dimensions), ``fake-mrl`` (may be shortened) and ``fake-model``
    (chat only), all on the fake engine."""
    tmp = tmp_path_factory.mktemp("gw-embeddings")
    profiles = tmp / "profiles"
    profiles.mkdir()
    (profiles / "embed.yaml").write_text(
        profile_yaml("fake-embed", upstream.url, f"  dimensions: {DIMS}\n  max_input_tokens: 16\n")
    )
    (profiles / "mrl.yaml").write_text(
        profile_yaml("fake-mrl", upstream.url, f"  dimensions: {DIMS}\n  matryoshka: true\n")
    )
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    engines = [f"{name}={upstream.url}" for name in ("fake-model", "fake-embed", "fake-mrl")]
    settings = gateway_settings(tmp, url, upstream, engines=engines, profiles_dir=profiles)
    async with start_gateway(settings, upstream) as gw:
        yield gw


class Caller:
    """A fresh user with an API key (created directly: no password hashing per test)."""

    def __init__(self, gateway: Gateway, user_id: int, key_id: int, api_key: str) -> None:
        self.gateway, self.user_id, self.key_id, self.api_key = gateway, user_id, key_id, api_key

    async def post(self, body: Any, request_id: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if request_id:
            headers["X-Request-ID"] = request_id
        async with self.gateway.client() as http:
            return await http.post("/v1/embeddings", json=body, headers=headers)


async def new_caller(gateway: Gateway) -> Caller:
    async with gateway.state.sessionmaker() as db:
        user = User(username=f"emb-{uuid.uuid4().hex[:10]}", password_hash=_HASH, role="user")
        db.add(user)
        await db.commit()
        key, api_key = await keys.create_key(db, user.id, "embeddings key")
    return Caller(gateway, user.id, key.id, api_key)


@pytest_asyncio.fixture
async def caller(gateway: Gateway) -> Caller:
    return await new_caller(gateway)


def rid() -> str:
    return f"emb-{uuid.uuid4().hex}"


async def one_row(gateway: Gateway, request_id: str) -> RequestLog:
    """The request's one usage row (the writer is asynchronous: wait for it, bounded)."""
    for _ in range(300):
        async with gateway.state.sessionmaker() as db:
            query = select(RequestLog).where(RequestLog.request_id == request_id)
            rows = list((await db.scalars(query)).all())
        if rows:
            assert len(rows) == 1, f"expected one usage row, got {len(rows)}"
            return rows[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no usage row for {request_id}")


def refusal(response: httpx.Response, status: int, param: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


# --------------------------------------------------------------------------- shapes


async def test_one_string_gets_openais_shape_and_one_usage_row(
    gateway: Gateway, caller: Caller
) -> None:
    request_id = rid()
    response = await caller.post(
        {"model": "fake-embed", "input": "the quick brown fox"}, request_id
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": 0,
                "embedding": embedding_of("the quick brown fox", DIMS),
            }
        ],
        "model": "fake-embed",
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    sent = gateway.upstream.by_request_id(request_id)
    assert sent.path == "/v1/embeddings"
    assert sent.payload == {
        "model": "fake-model",  # the engine's own name for it
        "input": "the quick brown fox",
        "encoding_format": "float",
    }
    row = await one_row(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.embeddings", "ok", 200)
    assert (row.model, row.user_id) == ("fake-embed", caller.user_id)
    assert (row.prompt_tokens, row.completion_tokens) == (4, 0)


async def test_every_input_form_keeps_its_order(caller: Caller) -> None:
    texts = ["alpha", "beta gamma", "alpha"]
    ids = [[1, 2, 3], [4, 5]]
    cases: list[tuple[Any, list[Any], int]] = [
        (texts, texts, 4),
        ([7, 8, 9], [[7, 8, 9]], 3),  # one input as token ids
        (ids, ids, 5),
    ]
    for given, inputs, tokens in cases:
        response = await caller.post({"model": "fake-embed", "input": given})
        assert response.status_code == 200, response.text
        body = response.json()
        assert [item["index"] for item in body["data"]] == list(range(len(inputs)))
        assert [item["embedding"] for item in body["data"]] == [
            embedding_of(item, DIMS) for item in inputs
        ]
        assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}


async def test_base64_is_the_float32_bytes_of_the_same_vectors(caller: Caller) -> None:
    body = {"model": "fake-embed", "input": ["one", "two"]}
    floats = (await caller.post(body)).json()["data"]
    encoded = await caller.post({**body, "encoding_format": "base64"})
    assert encoded.status_code == 200, encoded.text
    for plain, packed in zip(floats, encoded.json()["data"], strict=True):
        raw = base64.b64decode(packed["embedding"])
        assert len(raw) == 4 * DIMS
        decoded = struct.unpack(f"<{DIMS}f", raw)
        assert decoded == pytest.approx(plain["embedding"], rel=1e-6)


async def test_the_route_is_documented(gateway: Gateway) -> None:
    async with gateway.client() as http:
        operation = (await http.get("/openapi.json")).json()["paths"]["/v1/embeddings"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["model", "input"]
    assert {"200", "400", "401", "429", "502", "503"} <= set(operation["responses"])


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "fake-embed"}, "input"),
        ({"model": "fake-embed", "input": ""}, "input"),
        ({"model": "fake-embed", "input": []}, "input"),
        ({"model": "fake-embed", "input": {"text": "x"}}, "input"),
        ({"model": "fake-embed", "input": ["a", ""]}, "input.1"),
        ({"model": "fake-embed", "input": ["a", 3]}, "input.1"),
        ({"model": "fake-embed", "input": [1, -2]}, "input"),
        ({"model": "fake-embed", "input": [1, "a"]}, "input"),
        ({"model": "fake-embed", "input": [[1], []]}, "input.1"),
        ({"model": "fake-embed", "input": [[1], [2.5]]}, "input.1"),
        ({"model": "fake-embed", "input": ["a"] * (MAX_INPUTS + 1)}, "input"),
        ({"model": "fake-embed", "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "fake-embed", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "fake-embed", "input": "a", "dimensions": 4}, "dimensions"),
        ({"model": "fake-mrl", "input": "a", "dimensions": DIMS + 1}, "dimensions"),
        ({"model": "fake-model", "input": "a"}, "model"),
        ({"model": "fake-embed", "input": "a", "user": 7}, "user"),
        ({"model": "fake-embed", "input": list(range(17))}, "input"),  # over its 16 tokens
        ({"model": "fake-embed", "input": [[1], list(range(17))]}, "input.1"),
    ],
)
async def test_bad_requests_are_400s_naming_the_field(
    gateway: Gateway, caller: Caller, body: dict[str, Any], param: str
) -> None:
    request_id = rid()
    before = len(gateway.upstream.requests)
    refusal(await caller.post(body, request_id), 400, param)
    assert len(gateway.upstream.requests) == before  # no engine was called
    row = await one_row(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.embeddings", "rejected", 400)


async def test_a_chat_model_does_not_serve_embeddings(caller: Caller) -> None:
    error = refusal(await caller.post({"model": "fake-model", "input": "a"}), 400, "model")
    assert "does not support embeddings" in error["message"]
    missing = await caller.post({"model": "no-such-model", "input": "a"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


async def test_invalid_json_and_no_credentials(gateway: Gateway, caller: Caller) -> None:
    async with gateway.client() as http:
        anonymous = await http.post("/v1/embeddings", json={"model": "fake-embed", "input": "a"})
        broken = await http.post(
            "/v1/embeddings",
            content=b"{not json",
            headers={"Authorization": f"Bearer {caller.api_key}"},
        )
        wrong_method = await http.get(
            "/v1/embeddings", headers={"Authorization": f"Bearer {caller.api_key}"}
        )
    assert anonymous.status_code == 401
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "http_405"
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_request"


# --------------------------------------------------------------------------- dimensions


async def test_dimensions_shorten_only_where_the_model_can(
    gateway: Gateway, caller: Caller
) -> None:
    request_id = rid()
    short = await caller.post({"model": "fake-mrl", "input": "a", "dimensions": 4}, request_id)
    assert short.status_code == 200, short.text
    assert len(short.json()["data"][0]["embedding"]) == 4
    assert gateway.upstream.by_request_id(request_id).payload["dimensions"] == 4
    # The model's own size is no change: accepted everywhere, not sent on.
    request_id = rid()
    same = await caller.post({"model": "fake-embed", "input": "a", "dimensions": DIMS}, request_id)
    assert same.status_code == 200 and len(same.json()["data"][0]["embedding"]) == DIMS
    assert "dimensions" not in gateway.upstream.by_request_id(request_id).payload


# --------------------------------------------------------------------------- the engine


async def test_engine_failures_reach_the_client_and_the_usage_row(
    gateway: Gateway, caller: Caller
) -> None:
    cases = [("[[status=500]]", 502, "engine_error"), ("[[status=400]]", 400, "engine_rejected"),
             ("[[wrong_count]]", 502, "engine_bad_response")]  # fmt: skip
    for directive, status, code in cases:
        request_id = rid()
        response = await caller.post({"model": "fake-embed", "input": [directive, "b"]}, request_id)
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        row = await one_row(gateway, request_id)
        assert (row.route, row.status, row.status_code) == ("v1.embeddings", "error", status)


async def test_without_engine_usage_the_tokens_are_estimated(
    gateway: Gateway, caller: Caller
) -> None:
    request_id = rid()
    text = "[[no_usage]] " + "x" * 27  # 40 characters
    response = await caller.post({"model": "fake-embed", "input": text}, request_id)
    assert response.json()["usage"] == {"prompt_tokens": 10, "total_tokens": 10}
    assert (await one_row(gateway, request_id)).prompt_tokens == 10


async def test_a_client_that_leaves_leaves_a_cancelled_row(
    gateway: Gateway, caller: Caller
) -> None:
    request_id = rid()
    body = {"model": "fake-embed", "input": "[[delay=2]] slow"}
    with pytest.raises(httpx.ReadTimeout):
        async with gateway.client(timeout=0.5) as http:
            headers = {"Authorization": f"Bearer {caller.api_key}", "X-Request-ID": request_id}
            await http.post("/v1/embeddings", json=body, headers=headers)
    row = await one_row(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.embeddings", "cancelled", 499)


async def test_a_failing_replica_is_failed_over(tmp_path: Path, pair: Pair) -> None:
    sick, healthy = pair
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "embed.yaml").write_text(profile_yaml("fake-embed", sick.url, "  dimensions: 8\n"))
    url = f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(
        tmp_path, url, sick, profiles_dir=profiles, default_model="fake-embed",
        engines=[f"fake-embed={sick.url}", f"fake-embed={healthy.url}"],
    )  # fmt: skip
    sick.forced["status"] = "503"
    try:
        async with start_gateway(settings, sick) as gw:
            caller = await new_caller(gw)
            for _ in range(4):  # whichever replica is picked first, the healthy one answers
                request_id = rid()
                response = await caller.post({"model": "fake-embed", "input": "a"}, request_id)
                assert response.status_code == 200, response.text
                assert healthy.served(request_id)
    finally:
        sick.forced.clear()


# --------------------------------------------------------------------------- limits


async def test_requests_and_tokens_are_limited(gateway: Gateway) -> None:
    body = {"model": "fake-embed", "input": "one two three four five six"}  # 6 tokens
    by_requests = await new_caller(gateway)
    async with gateway.state.sessionmaker() as db:
        await admin.set_key_limits(db, by_requests.key_id, {"requests_per_minute": 1})
    assert (await by_requests.post(body)).status_code == 200
    limited = await by_requests.post(body)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1

    by_tokens = await new_caller(gateway)
    async with gateway.state.sessionmaker() as db:
        await admin.set_key_limits(db, by_tokens.key_id, {"tokens_per_day": 5})
    request_id = rid()
    assert (await by_tokens.post(body, request_id)).status_code == 200
    await one_row(gateway, request_id)  # charged once its row is recorded
    spent = await by_tokens.post(body)
    assert spent.status_code == 429, spent.text


# --------------------------------------------------------------------------- the real engine

SIMILAR = ("The cat is sleeping on the sofa.", "A cat sleeps on the couch.")
UNRELATED = "Quarterly tax filings are due at the end of March."
SMOLLM2_DIMENSIONS = 576  # SmolLM2-135M's hidden size (n_embd)


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest_asyncio.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    try:
        locate_smollm2_gguf()
        locate_llama_server()
    except EngineSetupError as exc:
        missing(str(exc))
    data_dir = tmp_path_factory.mktemp("embeddings-e2e")
    port = free_port()
    instance = Served(data_dir, port, serve_env(data_dir, port, None))
    await asyncio.to_thread(instance.start)
    try:
        yield instance
    finally:
        await asyncio.to_thread(instance.stop)


@pytest.mark.e2e
@pytest.mark.timeout(600)
async def test_the_embedded_engine_embeds_and_still_chats(served: Served) -> None:
    key = served.cli("keys", "create", "--user", "admin", "--name", "embeddings").split()[-1]
    headers = {"Authorization": f"Bearer {key}"}
    texts = [*SIMILAR, UNRELATED]
    chat = {
        "model": ENGINE_NAME,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "max_tokens": 8,
    }
    async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=120) as http:
        # Both at once on the one llama-server: neither waits for, nor breaks, the other.
        embedded, chatted = await asyncio.gather(
            http.post("/v1/embeddings", json={"model": ENGINE_NAME, "input": texts}),
            http.post("/v1/chat/completions", json=chat),
        )
        tokenized = await http.post(
            "/v1/embeddings", json={"model": ENGINE_NAME, "input": [1, 2, 3, 4, 5]}
        )
        packed = await http.post(
            "/v1/embeddings",
            json={"model": ENGINE_NAME, "input": UNRELATED, "encoding_format": "base64"},
        )
        # Over the 512 tokens one micro-batch holds: counted by the engine's tokenizer.
        too_long = await http.post(
            "/v1/embeddings", json={"model": ENGINE_NAME, "input": ["short", "word " * 600]}
        )
    assert embedded.status_code == 200, embedded.text
    body = embedded.json()
    vectors = [item["embedding"] for item in body["data"]]
    assert [len(v) for v in vectors] == [SMOLLM2_DIMENSIONS] * 3
    assert body["model"] == ENGINE_NAME and body["usage"]["prompt_tokens"] > 6
    similar = cosine(vectors[0], vectors[1])
    assert similar > cosine(vectors[0], vectors[2]) and similar > cosine(vectors[1], vectors[2])
    assert sum(x * x for x in vectors[2]) == pytest.approx(1.0, abs=1e-3)  # unit vectors
    decoded = struct.unpack(
        f"<{SMOLLM2_DIMENSIONS}f", base64.b64decode(packed.json()["data"][0]["embedding"])
    )
    assert cosine(list(decoded), vectors[2]) == pytest.approx(1.0, abs=1e-4)
    assert tokenized.json()["usage"]["prompt_tokens"] == 5  # the engine's count
    # A real generation on the same engine, with the engine's token counts.
    assert chatted.status_code == 200, chatted.text
    answer = chatted.json()
    assert answer["choices"][0]["message"]["content"]
    assert 1 <= answer["usage"]["completion_tokens"] <= 8
    assert too_long.status_code == 400, too_long.text
    assert too_long.json()["error"]["param"] == "input.1"
    exported = served.cli(
        "usage", "export", "--format", "jsonl", "--route", "v1.embeddings", "--status", "ok"
    )
    rows = [json.loads(line) for line in exported.splitlines() if line.strip()]
    assert sorted(row["prompt_tokens"] for row in rows) == sorted(
        [body["usage"]["prompt_tokens"], 5, packed.json()["usage"]["prompt_tokens"]]
    )
    assert {row["status"] for row in rows} == {"ok"}

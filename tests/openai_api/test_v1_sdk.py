"""/v1 through the official ``openai`` SDK: what developers see, unchanged."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import openai
import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.auth.passwords import hash_password
from chatgate.db.models import RequestLog, User
from chatgate.keys import service as keys
from tests.helpers import Gateway

ANSWER = "Paris is the capital of France."
_HASH = hash_password("unused-password-123")


@dataclass
class KeyAccount:
    user_id: int
    api_key: str


def sdk(gateway: Gateway, api_key: str) -> openai.AsyncOpenAI:
    # No retries: a failure must show up as the failure, not as a slow retry loop.
    return openai.AsyncOpenAI(
        base_url=gateway.url + "/v1", api_key=api_key, max_retries=0, timeout=20
    )


@pytest_asyncio.fixture
async def account(gateway: Gateway) -> KeyAccount:
    """A fresh user with an API key (stored directly: no password hashing per test)."""
    async with gateway.state.sessionmaker() as db:
        user = User(username=f"sdk-{uuid.uuid4().hex[:10]}", password_hash=_HASH, role="user")
        db.add(user)
        await db.commit()
        _, api_key = await keys.create_key(db, user.id, "sdk key")
    return KeyAccount(user.id, api_key)


@pytest_asyncio.fixture
async def client(gateway: Gateway, account: KeyAccount) -> AsyncIterator[openai.AsyncOpenAI]:
    async with sdk(gateway, account.api_key) as c:
        yield c


async def usage_row(gateway: Gateway, request_id: str) -> RequestLog:
    async with gateway.state.sessionmaker() as db:
        rows = (
            await db.scalars(select(RequestLog).where(RequestLog.request_id == request_id))
        ).all()
    assert len(rows) == 1, f"expected one usage row for {request_id}, got {len(rows)}"
    return rows[0]


async def test_non_stream_completion(
    gateway: Gateway, account: KeyAccount, client: openai.AsyncOpenAI
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model="fake-model",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "fake-model"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 7
    assert completion.usage.prompt_tokens == 6
    assert completion.usage.total_tokens == 13
    request_id = raw.headers["x-request-id"]
    row = await usage_row(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.chat", "ok", 200)
    assert (row.prompt_tokens, row.completion_tokens) == (6, 7)
    assert row.user_id == account.user_id and row.api_key_id is not None
    assert row.model == "fake-model" and row.finish_reason == "stop"


async def test_stream_chunks_concatenate_to_the_answer(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "capital?"}],
        stream=True,
    )
    parts: list[str] = []
    finish: list[str] = []
    usage_chunks = 0
    async for chunk in stream:
        assert chunk.model == "fake-model"
        if chunk.usage is not None:
            usage_chunks += 1
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert "".join(parts) == ANSWER
    assert finish == ["stop"]
    # The gateway always asks the engine for usage, but never forwards it unasked.
    assert usage_chunks == 0


async def test_stream_include_usage_yields_the_final_usage_chunk(
    gateway: Gateway, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "capital of France?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 7
    assert last.usage.prompt_tokens == 3
    assert [c for c in chunks[:-1] if c.usage is not None] == []
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER


async def test_stream_usage_row_is_committed_before_done(
    gateway: Gateway, account: KeyAccount, client: openai.AsyncOpenAI
) -> None:
    stream = await client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "hi [[chunks=5]]"}],
        stream=True,
    )
    request_id = stream.response.headers["x-request-id"]
    async for _ in stream:
        pass
    row = await usage_row(gateway, request_id)  # right away: no waiting
    assert (row.route, row.status, row.status_code) == ("v1.chat", "ok", 200)
    assert row.completion_tokens == 5
    assert row.user_id == account.user_id
    assert row.ttft_ms is not None and row.latency_ms >= row.ttft_ms


async def test_models_list(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    ids = [m.id for m in page.data]
    assert ids == ["fake-model"]
    assert page.data[0].object == "model"


async def test_models_retrieve(client: openai.AsyncOpenAI) -> None:
    model = await client.models.retrieve("fake-model")
    assert model.id == "fake-model"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("no-such-model")


async def test_wrong_key_is_an_authentication_error(gateway: Gateway) -> None:
    async with sdk(gateway, "sk-cg-" + "x" * 40) as bad:
        with pytest.raises(openai.AuthenticationError) as info:
            await bad.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "hi"}]
            )
    error = info.value
    assert error.status_code == 401
    body = json.loads(error.response.text)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "code", "param"}
    assert body["error"]["type"] == "authentication_error"
    assert body["error"]["code"] == "invalid_api_key"
    assert error.code == "invalid_api_key"
    assert "x-request-id" in error.response.headers


async def test_garbage_token_is_an_authentication_error(gateway: Gateway) -> None:
    async with sdk(gateway, "not-a-key-nor-a-jwt") as bad:
        with pytest.raises(openai.AuthenticationError):
            await bad.models.list()


async def test_unknown_model_is_not_found(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        await client.chat.completions.create(
            model="gpt-nonexistent", messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert info.value.param == "model"


async def test_default_alias_resolves_to_the_default_model(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.model == "fake-model"
    assert completion.choices[0].message.content == ANSWER


async def test_login_token_works_as_api_key(gateway: Gateway) -> None:
    account = await gateway.account()  # a real login: the JWT is the api_key
    async with sdk(gateway, account.token) as jwt_client:
        raw = await jwt_client.chat.completions.with_raw_response.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert raw.parse().choices[0].message.content == ANSWER
    row = await usage_row(gateway, raw.headers["x-request-id"])
    assert row.user_id == account.user_id
    assert row.api_key_id is None  # a login, not a key


async def test_mid_stream_engine_crash_raises_api_error(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "hi [[crash_after=3]]"}],
        stream=True,
    )
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        async for chunk in stream:
            received.extend(c.delta.content or "" for c in chunk.choices)
    assert "".join(received) == "Paris is the"
    assert "engine" in info.value.message.lower()


async def test_engine_failure_is_a_server_error(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        await client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi [[status=500]]"}]
        )
    assert info.value.status_code == 502
    assert info.value.code == "engine_error"


async def test_sdk_sampling_params_reach_the_engine(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "[[echo]]"}],
        temperature=0.3,
        top_p=0.9,
        seed=7,
        stop=["\n\n"],
        extra_body={"top_k": 20, "repetition_penalty": 1.1},
    )
    content = completion.choices[0].message.content
    assert content is not None
    sent = json.loads(content)
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9 and sent["seed"] == 7
    assert sent["stop"] == ["\n\n"]
    assert sent["top_k"] == 20 and sent["repetition_penalty"] == 1.1
    assert sent["model"] == "fake-model"


async def test_legacy_completions_non_stream(client: openai.AsyncOpenAI) -> None:
    completion = await client.completions.create(model="fake-model", prompt="Say hi")
    assert completion.model == "fake-model"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None


async def test_legacy_completions_stream(gateway: Gateway, client: openai.AsyncOpenAI) -> None:
    stream = await client.completions.create(model="fake-model", prompt="Say hi", stream=True)
    request_id = stream.response.headers["x-request-id"]
    chunks = [chunk async for chunk in stream]
    assert chunks and all(c.model == "fake-model" for c in chunks)
    assert gateway.upstream.by_request_id(request_id).path == "/v1/completions"
    row = await usage_row(gateway, request_id)
    assert (row.route, row.status) == ("v1.completions", "ok")

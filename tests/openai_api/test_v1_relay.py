"""/v1 relay behaviour over raw HTTP: pass-through, caps, engine failures, streams,
client disconnects and the usage row each request leaves."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from chatgate.auth.passwords import hash_password
from chatgate.db import migrate
from chatgate.db.models import RequestLog, User
from chatgate.keys import service as keys
from chatgate.observability.metrics import Metrics
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream, Recorded
from tests.helpers import Gateway, free_port, parse_sse, start_gateway

ANSWER = "Paris is the capital of France."
T = TypeVar("T")
_HASH = hash_password("unused-password-123")


# --------------------------------------------------------------------------- helpers


class Caller:
    """A fresh user with an API key (created directly: no password hashing per test)."""

    def __init__(self, gateway: Gateway, user_id: int, api_key: str) -> None:
        self.gateway = gateway
        self.user_id = user_id
        self.api_key = api_key

    def headers(self, request_id: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if request_id:
            headers["X-Request-ID"] = request_id
        return headers


async def new_caller(gateway: Gateway) -> Caller:
    async with gateway.state.sessionmaker() as db:
        user = User(username=f"relay-{uuid.uuid4().hex[:10]}", password_hash=_HASH, role="user")
        db.add(user)
        await db.commit()
        _, api_key = await keys.create_key(db, user.id, "relay key")
    return Caller(gateway, user.id, api_key)


def rid() -> str:
    return f"t-{uuid.uuid4().hex}"


def chat_body(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": content}], **extra}


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float = 3.0) -> T:
    """Poll until ``probe`` returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


async def _async(value: T) -> T:
    """``value`` as an awaitable, for ``eventually(lambda: _async(...))``."""
    return value


async def rows_for(gateway: Gateway, request_id: str) -> list[RequestLog]:
    async with gateway.state.sessionmaker() as db:
        query = select(RequestLog).where(RequestLog.request_id == request_id)
        return list((await db.scalars(query)).all())


async def one_row(gateway: Gateway, request_id: str) -> RequestLog:
    rows = await rows_for(gateway, request_id)
    assert len(rows) == 1, f"expected exactly one usage row, got {len(rows)}"
    return rows[0]


def recorded(upstream: FakeUpstream, request_id: str) -> Recorded | None:
    return next(iter(upstream.served(request_id)), None)


def assert_error_shape(body: Any, code: str | None = None) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"type", "message", "code", "param"} <= set(error)
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    return dict(error)


@asynccontextmanager
async def special_gateway(
    tmp: Path, upstream: FakeUpstream, **overrides: Any
) -> AsyncIterator[Gateway]:
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(tmp, url, upstream, **overrides)
    async with start_gateway(settings, upstream) as gw:
        yield gw


@pytest_asyncio.fixture
async def caller(gateway: Gateway) -> Caller:
    return await new_caller(gateway)


@pytest_asyncio.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway.client() as client:
        yield client


@pytest_asyncio.fixture(scope="module")
async def renamed_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> AsyncIterator[Gateway]:
    """Public model id 'public-llm' served by an engine whose own model is 'fake-model'."""
    async with special_gateway(
        tmp_path_factory.mktemp("gw-renamed"),
        upstream,
        engines=[f"public-llm={upstream.url}"],
        default_model="public-llm",
    ) as gw:
        yield gw


@pytest_asyncio.fixture(scope="module")
async def fast_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> AsyncIterator[Gateway]:
    """Short engine timeouts and small caps, so timeout and cap tests stay fast."""
    async with special_gateway(
        tmp_path_factory.mktemp("gw-fast"),
        upstream,
        engine_ttft_timeout=0.5,
        engine_idle_timeout=0.5,
        max_messages=3,
        max_tokens_cap=100,
        max_body_bytes=4096,
        max_prompt_chars=1000,
    ) as gw:
        yield gw


@pytest_asyncio.fixture(scope="module")
async def dead_engine_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> AsyncIterator[Gateway]:
    """The engine URL points at a closed port."""
    async with special_gateway(
        tmp_path_factory.mktemp("gw-dead"),
        upstream,
        engines=[f"fake-model=http://127.0.0.1:{free_port()}"],
    ) as gw:
        yield gw


# --------------------------------------------------------------------------- pass-through


async def test_extra_sampling_params_reach_the_engine_unchanged(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    extra = {
        "top_k": 40,
        "repetition_penalty": 1.15,
        "seed": 1234,
        "logit_bias": {"50256": -100},
        "min_p": 0.05,
        "guided_json": {"type": "object"},
        "temperature": 0.2,
        "max_tokens": 64,
    }
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("[[echo]]", **extra),
        headers=caller.headers(request_id),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    sent = json.loads(body["choices"][0]["message"]["content"])
    for key, value in extra.items():
        assert sent[key] == value, key
    assert sent["messages"] == [{"role": "user", "content": "[[echo]]"}]
    assert sent["model"] == "fake-model"
    assert recorded(gateway.upstream, request_id) is not None


async def test_stream_params_pass_through_and_usage_is_requested(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("[[echo]]", stream=True, top_k=5, stream_options={"continuous": 1}),
        headers=caller.headers(request_id),
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    payload = gateway.upstream.by_request_id(request_id).payload
    assert payload["top_k"] == 5
    # The gateway always asks the engine for usage (and keeps the client's other options).
    assert payload["stream_options"] == {"continuous": 1, "include_usage": True}
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]"
    # ...but the client did not ask for it, so no usage-only chunk reaches it.
    assert not [e for e in events[:-1] if not e.data.get("choices") and e.data.get("usage")]


async def test_model_is_mapped_to_the_engines_own_name(renamed_gateway: Gateway) -> None:
    caller = await new_caller(renamed_gateway)
    async with renamed_gateway.client() as http:
        request_id = rid()
        response = await http.post(
            "/v1/chat/completions",
            json={**chat_body("[[echo]]"), "model": "public-llm"},
            headers=caller.headers(request_id),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == "public-llm"
        assert json.loads(body["choices"][0]["message"]["content"])["model"] == "fake-model"
        assert renamed_gateway.upstream.by_request_id(request_id).payload["model"] == "fake-model"

        stream_id = rid()
        response = await http.post(
            "/v1/chat/completions",
            json={**chat_body("hi"), "model": "public-llm", "stream": True},
            headers=caller.headers(stream_id),
        )
        chunks = [e.data for e in parse_sse(response.text) if isinstance(e.data, dict)]
        assert chunks and all(c["model"] == "public-llm" for c in chunks)
        assert renamed_gateway.upstream.by_request_id(stream_id).payload["model"] == "fake-model"

        models = (await http.get("/v1/models", headers=caller.headers())).json()
        assert [m["id"] for m in models["data"]] == ["public-llm"]
        unknown = await http.post(
            "/v1/chat/completions", json=chat_body("hi"), headers=caller.headers()
        )
        assert unknown.status_code == 404  # the engine's name is not a public id
    row = await one_row(renamed_gateway, request_id)
    assert row.model == "public-llm"


async def test_client_supplied_urls_do_not_change_the_destination(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    trap = FakeUpstream(model="trap")
    await trap.start()
    try:
        request_id = rid()
        body = chat_body(
            "[[echo]]",
            base_url=trap.url,
            api_base=trap.url + "/v1",
            url=trap.url + "/v1/chat/completions",
            engine=trap.url,
            endpoint=trap.url,
            engine_url=trap.url,
        )
        response = await http.post(
            "/v1/chat/completions",
            json=body,
            params={"base_url": trap.url, "engine": trap.url},
            headers={
                **caller.headers(request_id),
                "X-Forwarded-Host": f"127.0.0.1:{trap.port}",
                "X-Engine-URL": trap.url,
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "fake-model"
        assert trap.requests == []
        assert gateway.upstream.by_request_id(request_id).path == "/v1/chat/completions"
    finally:
        await trap.stop()


# --------------------------------------------------------------------------- caps and validation


def not_sent(upstream: FakeUpstream, marker: str) -> bool:
    return not any(marker in json.dumps(r.payload) for r in upstream.requests)


async def test_max_tokens_over_the_cap_is_rejected_before_the_engine(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    cap = gateway.settings.max_tokens_cap
    for name in ("max_tokens", "max_completion_tokens"):
        marker = uuid.uuid4().hex
        response = await http.post(
            "/v1/chat/completions",
            json=chat_body(marker, **{name: cap + 1}),
            headers=caller.headers(),
        )
        assert response.status_code == 400
        error = assert_error_shape(response.json(), "max_tokens_too_large")
        assert error["param"] == name
        assert error["type"] == "invalid_request_error"
        assert not_sent(gateway.upstream, marker)
    ok = await http.post(
        "/v1/chat/completions", json=chat_body("hi", max_tokens=cap), headers=caller.headers()
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"model": "fake-model"}, "invalid_messages", "messages"),
        ({"model": "fake-model", "messages": []}, "invalid_messages", "messages"),
        ({"model": "fake-model", "messages": "hello"}, "invalid_messages", "messages"),
        (
            {"model": "fake-model", "messages": [{"content": "no role"}]},
            "invalid_messages",
            "messages.0.role",
        ),
        ({"messages": [{"role": "user", "content": "hi"}]}, "missing_model", "model"),
        ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, "missing_model", "model"),
        ({**chat_body("hi"), "max_tokens": 0}, "invalid_value", "max_tokens"),
        ({**chat_body("hi"), "max_tokens": "10"}, "invalid_value", "max_tokens"),
    ],
)
async def test_invalid_chat_bodies_are_400(
    gateway: Gateway,
    caller: Caller,
    http: httpx.AsyncClient,
    body: dict[str, Any],
    code: str,
    param: str,
) -> None:
    before = len(gateway.upstream.requests)
    response = await http.post("/v1/chat/completions", json=body, headers=caller.headers())
    assert response.status_code == 400, response.text
    error = assert_error_shape(response.json(), code)
    assert error["param"] == param
    assert len(gateway.upstream.requests) == before


async def test_non_object_body_is_400(caller: Caller, http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/chat/completions", json=[1, 2, 3], headers=caller.headers())
    assert response.status_code == 400
    assert_error_shape(response.json())
    response = await http.post(
        "/v1/chat/completions",
        content=b"{not json",
        headers={**caller.headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert assert_error_shape(response.json())["param"] is None


async def test_too_many_messages_is_400(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    marker = uuid.uuid4().hex
    count = gateway.settings.max_messages + 1
    messages = [{"role": "user", "content": marker}] * count
    response = await http.post(
        "/v1/chat/completions",
        json={"model": "fake-model", "messages": messages},
        headers=caller.headers(),
    )
    assert response.status_code == 400
    error = assert_error_shape(response.json(), "too_many_messages")
    assert error["param"] == "messages"
    assert not_sent(gateway.upstream, marker)


async def test_caps_on_a_gateway_with_small_limits(fast_gateway: Gateway) -> None:
    caller = await new_caller(fast_gateway)
    marker = uuid.uuid4().hex
    async with fast_gateway.client() as http:
        four = [{"role": "user", "content": marker}] * 4
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": four},
            headers=caller.headers(),
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "too_many_messages"

        response = await http.post(
            "/v1/chat/completions",
            json=chat_body(marker + "x" * 1200),
            headers=caller.headers(),
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "prompt_too_long"

        response = await http.post(
            "/v1/completions",
            json={"model": "fake-model", "prompt": marker, "max_tokens": 101},
            headers=caller.headers(),
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "max_tokens_too_large"
    assert not_sent(fast_gateway.upstream, marker)


async def test_body_over_the_limit_is_413(fast_gateway: Gateway) -> None:
    caller = await new_caller(fast_gateway)
    marker = uuid.uuid4().hex
    big = chat_body(marker + "y" * 5000)
    async with fast_gateway.client() as http:
        response = await http.post("/v1/chat/completions", json=big, headers=caller.headers())
        assert response.status_code == 413
        assert_error_shape(response.json(), "body_too_large")
        assert response.headers["x-request-id"]

        # Chunked upload (no Content-Length): the limit is enforced while reading.
        data = json.dumps(big).encode()

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 1000):
                yield data[start : start + 1000]

        response = await http.post(
            "/v1/chat/completions",
            content=chunks(),
            headers={**caller.headers(), "Content-Type": "application/json"},
        )
        assert response.status_code == 413, response.text
        assert_error_shape(response.json(), "body_too_large")
        assert response.headers["x-request-id"]
    assert not_sent(fast_gateway.upstream, marker)


async def test_body_over_the_default_limit_is_413(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    marker = uuid.uuid4().hex
    filler = "z" * (gateway.settings.max_body_bytes + 10)
    response = await http.post(
        "/v1/chat/completions", json=chat_body(marker + filler), headers=caller.headers()
    )
    assert response.status_code == 413
    assert_error_shape(response.json(), "body_too_large")
    assert not_sent(gateway.upstream, marker)


async def test_legacy_completions_need_a_prompt(caller: Caller, http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/completions", json={"model": "fake-model"}, headers=caller.headers()
    )
    assert response.status_code == 400
    assert assert_error_shape(response.json(), "invalid_prompt")["param"] == "prompt"


# --------------------------------------------------------------------------- engine failures


async def test_engine_500_is_502(gateway: Gateway, caller: Caller, http: httpx.AsyncClient) -> None:
    for stream in (False, True):
        request_id = rid()
        response = await http.post(
            "/v1/chat/completions",
            json=chat_body("hi [[status=500]]", stream=stream),
            headers=caller.headers(request_id),
        )
        assert response.status_code == 502, response.text
        error = assert_error_shape(response.json(), "engine_error")
        assert error["type"] == "upstream_error"
        assert response.headers["x-request-id"] == request_id
        row = await one_row(gateway, request_id)
        assert (row.status, row.status_code, row.route) == ("error", 502, "v1.chat")
        assert row.error and "fake failure 500" in row.error
    assert all(ep.outstanding == 0 for ep in gateway.state.registry.endpoints())


@pytest.mark.parametrize("status", [400, 422, 429])
async def test_engine_4xx_passes_its_status_through(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient, status: int
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body(f"hi [[status={status}]]"),
        headers=caller.headers(request_id),
    )
    assert response.status_code == status
    error = assert_error_shape(response.json(), "engine_rejected")
    assert error["message"] == f"fake failure {status}"
    row = await one_row(gateway, request_id)
    assert (row.status, row.status_code) == ("error", status)


async def test_unreachable_engine_is_503(dead_engine_gateway: Gateway) -> None:
    caller = await new_caller(dead_engine_gateway)
    async with dead_engine_gateway.client() as http:
        for stream in (False, True):
            request_id = rid()
            started = time.monotonic()
            response = await http.post(
                "/v1/chat/completions",
                json=chat_body("hi", stream=stream),
                headers=caller.headers(request_id),
            )
            assert time.monotonic() - started < 2.5
            assert response.status_code == 503
            error = assert_error_shape(response.json(), "engine_unavailable")
            assert error["type"] == "service_unavailable"
            row = await one_row(dead_engine_gateway, request_id)
            assert (row.status, row.status_code) == ("error", 503)
        response = await http.post(
            "/v1/completions",
            json={"model": "fake-model", "prompt": "hi"},
            headers=caller.headers(),
        )
        assert response.status_code == 503


async def test_slow_first_token_is_504(fast_gateway: Gateway) -> None:
    caller = await new_caller(fast_gateway)
    async with fast_gateway.client() as http:
        for stream in (False, True):
            request_id = rid()
            started = time.monotonic()
            response = await http.post(
                "/v1/chat/completions",
                json=chat_body("hi [[first_token_delay=2]]", stream=stream),
                headers=caller.headers(request_id),
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 504, response.text
            assert 0.4 < elapsed < 1.9
            error = assert_error_shape(response.json(), "engine_timeout")
            assert error["type"] == "timeout_error"
            row = await one_row(fast_gateway, request_id)
            assert (row.status, row.status_code) == ("error", 504)


async def test_idle_engine_mid_stream_ends_with_an_error_event(fast_gateway: Gateway) -> None:
    caller = await new_caller(fast_gateway)
    request_id = rid()
    async with fast_gateway.client() as http:
        response = await http.post(
            "/v1/chat/completions",
            json=chat_body("hi [[chunks=5 delay=0.8]]", stream=True),
            headers=caller.headers(request_id),
        )
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]"
    error = assert_error_shape(events[-2].data, "engine_timeout")
    assert error["message"]
    text = "".join(
        (c.get("delta") or {}).get("content") or ""
        for e in events[:-2]
        for c in e.data.get("choices", [])
    )
    assert text == "Paris"  # one chunk, then silence longer than the idle timeout
    row = await one_row(fast_gateway, request_id)
    assert (row.status, row.status_code, row.completion_tokens) == ("error", 504, 1)
    upstream = fast_gateway.upstream.by_request_id(request_id)
    await eventually(lambda: _async(upstream.aborted_at))


async def test_mid_stream_crash_sends_an_error_event_then_done(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("hi [[crash_after=3]]", stream=True),
        headers=caller.headers(request_id),
    )
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]"
    error = assert_error_shape(events[-2].data, "engine_disconnected")
    assert error["type"] == "engine_error"
    contents = [c["delta"].get("content", "") for e in events[:-2] for c in e.data["choices"]]
    assert "".join(contents) == "Paris is the"
    row = await one_row(gateway, request_id)
    assert (row.status, row.status_code) == ("error", 502)
    assert row.completion_tokens == 3  # counted chunks: the engine sent no usage
    assert row.finish_reason is None


async def test_stream_without_finish_reason_is_an_error(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("hi [[no_finish]]", stream=True),
        headers=caller.headers(request_id),
    )
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]"
    assert_error_shape(events[-2].data, "engine_disconnected")
    row = await one_row(gateway, request_id)
    assert (row.status, row.status_code) == ("error", 502)


# --------------------------------------------------------------------------- client disconnect


async def test_client_disconnect_aborts_the_engine_request(
    gateway: Gateway, caller: Caller
) -> None:
    request_id = rid()
    async with gateway.client() as http:
        async with http.stream(
            "POST",
            "/v1/chat/completions",
            json=chat_body("go [[chunks=200 delay=0.02]]", stream=True),
            headers=caller.headers(request_id),
        ) as response:
            assert response.status_code == 200
            seen = 0
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    seen += 1
                if seen >= 3:
                    break
    disconnected = time.time()
    record = gateway.upstream.by_request_id(request_id)

    async def aborted() -> float | None:
        return record.aborted_at

    aborted_at = await eventually(aborted, timeout=3)
    assert aborted_at - disconnected < 2.0
    sent = record.chunks_sent
    await asyncio.sleep(0.1)  # the engine stopped: nothing more goes out
    assert record.chunks_sent == sent < 200
    assert record.finished is None

    async def cancelled_row() -> RequestLog | None:
        rows = await rows_for(gateway, request_id)
        return rows[0] if rows else None

    row = await eventually(cancelled_row)
    assert (row.status, row.status_code, row.route) == ("cancelled", 499, "v1.chat")
    assert row.user_id == caller.user_id
    assert 3 <= row.completion_tokens < 200
    assert row.ttft_ms is not None
    assert len(await rows_for(gateway, request_id)) == 1

    async def drained() -> bool:
        return all(ep.outstanding == 0 for ep in gateway.state.registry.endpoints())

    await eventually(drained)


async def test_client_gone_before_the_first_token_aborts_the_engine_request(
    gateway: Gateway, caller: Caller
) -> None:
    """The client leaves while the gateway still waits for the engine's first byte."""
    request_id = rid()

    async def call() -> None:
        async with gateway.client() as http:
            await http.post(
                "/v1/chat/completions",
                json=chat_body("go [[first_token_delay=2 chunks=100 delay=0.02]]", stream=True),
                headers=caller.headers(request_id),
            )

    task = asyncio.create_task(call())
    await eventually(lambda: _async(recorded(gateway.upstream, request_id)))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    left = time.monotonic()

    async def cancelled_row() -> RequestLog | None:
        rows = await rows_for(gateway, request_id)
        return rows[0] if rows else None

    row = await eventually(cancelled_row)
    # Noticed at once, not when the engine's first byte arrives (2 s after the request).
    assert time.monotonic() - left < 1.2
    assert (row.status, row.status_code) == ("cancelled", 499)

    async def drained() -> bool:
        return all(ep.outstanding == 0 for ep in gateway.state.registry.endpoints())

    await eventually(drained)
    assert len(await rows_for(gateway, request_id)) == 1


@asynccontextmanager
async def hanging_engine() -> AsyncIterator[tuple[str, dict[str, float]]]:
    """An engine that never answers, and records when its caller hangs up."""
    from aiohttp import web

    seen: dict[str, float] = {}

    async def models(_request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model"}]})

    async def chat(_request: web.Request) -> web.Response:
        seen["started"] = time.monotonic()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["aborted"] = time.monotonic()
            raise
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(
        app, handle_signals=False, handler_cancellation=True, shutdown_timeout=0.1
    )
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_while_the_engine_thinks_aborts_it(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream, stream: bool
) -> None:
    """Non-streamed, or streamed before the engine's first byte: the server does not
    cancel the handler, so the gateway must notice the hang-up itself."""
    async with (
        hanging_engine() as (url, seen),
        special_gateway(
            tmp_path_factory.mktemp("gw-hang"),
            upstream,
            engines=[f"fake-model={url}"],
            engine_ttft_timeout=20,
        ) as gw,
    ):
        caller = await new_caller(gw)
        request_id = rid()

        async def call() -> None:
            async with gw.client() as http:
                await http.post(
                    "/v1/chat/completions",
                    json=chat_body("take your time", stream=stream),
                    headers=caller.headers(request_id),
                )

        task = asyncio.create_task(call())
        await eventually(lambda: _async(seen.get("started")))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        left = time.monotonic()
        aborted = await eventually(lambda: _async(seen.get("aborted")), timeout=3)
        assert aborted - left < 2.0

        async def cancelled_row() -> RequestLog | None:
            rows = await rows_for(gw, request_id)
            return rows[0] if rows else None

        row = await eventually(cancelled_row)
        assert (row.status, row.status_code, row.route) == ("cancelled", 499, "v1.chat")
        assert all(ep.outstanding == 0 for ep in gw.state.registry.endpoints())


# --------------------------------------------------------------------------- usage rows


async def test_non_stream_usage_row(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("one two three four"),
        headers=caller.headers(request_id),
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id
    row = await one_row(gateway, request_id)
    assert (row.route, row.status, row.status_code) == ("v1.chat", "ok", 200)
    assert (row.prompt_tokens, row.completion_tokens) == (4, 7)
    assert row.finish_reason == "stop"
    assert row.user_id == caller.user_id and row.api_key_id is not None
    assert row.model == "fake-model" and row.engine and "fake-model@" in row.engine
    assert row.latency_ms > 0


async def test_stream_usage_row_without_engine_usage_counts_chunks(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("hi [[no_usage chunks=12]]", stream=True),
        headers=caller.headers(request_id),
    )
    assert parse_sse(response.text)[-1].data == "[DONE]"
    row = await one_row(gateway, request_id)  # committed before [DONE]: no waiting
    assert (row.status, row.status_code, row.finish_reason) == ("ok", 200, "stop")
    assert row.completion_tokens == 12
    assert row.prompt_tokens > 0  # estimated
    assert row.ttft_ms is not None and row.ttft_ms <= row.latency_ms


async def test_stream_usage_row_uses_engine_usage(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body(
            "a b c d e [[chunks=9]]", stream=True, stream_options={"include_usage": True}
        ),
        headers=caller.headers(request_id),
    )
    events = parse_sse(response.text)
    usage = events[-2].data["usage"]
    assert usage == {"prompt_tokens": 6, "completion_tokens": 9, "total_tokens": 15}
    row = await one_row(gateway, request_id)
    assert (row.prompt_tokens, row.completion_tokens) == (6, 9)


async def test_include_usage_without_engine_usage_gets_the_gateways_count(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    """Engines that ignore include_usage (llama.cpp): the gateway sends its own count."""
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body(
            "hi [[no_usage chunks=6]]", stream=True, stream_options={"include_usage": True}
        ),
        headers=caller.headers(request_id),
    )
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]"
    usage_only = [e.data for e in events[:-1] if not e.data.get("choices")]
    assert len(usage_only) == 1 and usage_only[0] is events[-2].data
    usage = usage_only[0]["usage"]
    row = await one_row(gateway, request_id)
    assert usage["completion_tokens"] == row.completion_tokens == 6
    assert usage["prompt_tokens"] == row.prompt_tokens > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + 6
    assert usage_only[0]["model"] == "fake-model"


async def test_non_stream_without_engine_usage_still_counts_tokens(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("hi [[no_usage chunks=40]]"),
        headers=caller.headers(request_id),
    )
    assert response.status_code == 200
    row = await one_row(gateway, request_id)
    assert row.completion_tokens > 0
    assert row.prompt_tokens > 0


async def test_rejected_request_leaves_one_row(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("hi", max_tokens=10**9),
        headers=caller.headers(request_id),
    )
    assert response.status_code == 400
    row = await one_row(gateway, request_id)
    assert (row.status, row.status_code, row.route) == ("rejected", 400, "v1.chat")
    assert row.user_id == caller.user_id and row.error

    request_id = rid()
    response = await http.post(
        "/v1/chat/completions",
        json={**chat_body("hi"), "model": "nope"},
        headers=caller.headers(request_id),
    )
    assert response.status_code == 404
    row = await one_row(gateway, request_id)
    assert (row.status, row.status_code, row.model) == ("rejected", 404, "nope")


async def test_reused_request_id_still_writes_both_rows(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    """A client that resends its X-Request-ID (retries) must not break accounting."""
    request_id = rid()
    for _ in range(2):
        response = await http.post(
            "/v1/chat/completions", json=chat_body("hi"), headers=caller.headers(request_id)
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == request_id
    response = await http.post(
        "/v1/chat/completions",
        json=chat_body("hi", stream=True),
        headers=caller.headers(request_id),
    )
    assert parse_sse(response.text)[-1].data == "[DONE]"
    async with gateway.state.sessionmaker() as db:
        rows = (
            await db.scalars(select(RequestLog).where(RequestLog.request_id.startswith(request_id)))
        ).all()
    assert len(rows) == 3
    assert {r.status for r in rows} == {"ok"}


async def test_concurrent_requests_each_leave_one_row(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    ids = [rid() for _ in range(20)]

    async def one(request_id: str, stream: bool) -> int:
        response = await http.post(
            "/v1/chat/completions",
            json=chat_body("hi [[chunks=3]]", stream=stream),
            headers=caller.headers(request_id),
        )
        return response.status_code

    codes = await asyncio.gather(*(one(r, i % 2 == 0) for i, r in enumerate(ids)))
    assert codes == [200] * 20
    for request_id in ids:
        row = await one_row(gateway, request_id)
        assert row.status == "ok" and row.completion_tokens == 3


async def test_legacy_completions_relay(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    request_id = rid()
    response = await http.post(
        "/v1/completions",
        json={"model": "fake-model", "prompt": "[[echo]]", "best_of": 2, "echo": False},
        headers=caller.headers(request_id),
    )
    assert response.status_code == 200
    record = gateway.upstream.by_request_id(request_id)
    assert record.path == "/v1/completions"
    assert record.payload["best_of"] == 2 and record.payload["prompt"] == "[[echo]]"
    row = await one_row(gateway, request_id)
    assert (row.route, row.status) == ("v1.completions", "ok")

    request_id = rid()
    response = await http.post(
        "/v1/completions",
        json={"model": "fake-model", "prompt": "go [[chunks=4]]", "stream": True},
        headers=caller.headers(request_id),
    )
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]"
    row = await one_row(gateway, request_id)
    assert (row.route, row.status, row.completion_tokens) == ("v1.completions", "ok", 4)


async def test_v1_requires_credentials(http: httpx.AsyncClient) -> None:
    for method, path in (
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("GET", "/v1/models"),
    ):
        response = await http.request(method, path, json=chat_body("hi"))
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert_error_shape(response.json(), "invalid_api_key")


async def test_revoked_key_is_rejected(
    gateway: Gateway, caller: Caller, http: httpx.AsyncClient
) -> None:
    async with gateway.state.sessionmaker() as db:
        for key in await keys.list_keys(db, caller.user_id):
            await keys.revoke_key(db, caller.user_id, key.id)
    response = await http.get("/v1/models", headers=caller.headers())
    assert response.status_code == 401


async def test_model_ids_with_slashes_are_retrievable(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> None:
    """HF-style ids (org/name) are the norm for vLLM; GET /v1/models/{id} must serve them."""
    async with special_gateway(
        tmp_path_factory.mktemp("gw-slash"),
        upstream,
        engines=[f"org/model-7b={upstream.url}"],
        default_model="org/model-7b",
    ) as gw:
        caller = await new_caller(gw)
        async with gw.client() as http:
            response = await http.get("/v1/models/org/model-7b", headers=caller.headers())
            assert response.status_code == 200, response.text
            assert response.json()["id"] == "org/model-7b"
            response = await http.get("/v1/models/org/other", headers=caller.headers())
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "model_not_found"


# --------------------------------------------------------------------------- relay_stream unit


class _StubUsage:
    def __init__(self) -> None:
        self.rows: list[Any] = []

    async def record(self, row: Any) -> None:
        self.rows.append(row)

    def record_nowait(self, row: Any) -> None:
        self.rows.append(row)


class _StubResponse:
    def __init__(self) -> None:
        self.closed = self.released = False

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        self.released = True


def _relay_call(lines: list[bytes], fail: bool) -> tuple[Any, _StubUsage]:
    from types import SimpleNamespace

    from chatgate.auth.identity import Identity
    from chatgate.engines.admission.pool import Ticket
    from chatgate.engines.upstream.client import EngineError
    from chatgate.engines.upstream.endpoint import Endpoint
    from chatgate.engines.upstream.failover import EngineCall
    from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
    from chatgate.openai_api.service import RelayCall

    class Engines:
        async def line_batches(
            self, _response: Any, _endpoint: Any = None
        ) -> AsyncIterator[list[bytes]]:
            for line in lines:  # one network read per event: the client may leave between
                yield [line]
            if fail:
                raise EngineError("The engine connection broke", "engine_disconnected")

    usage = _StubUsage()
    endpoint = Endpoint("e", "http://e/v1", "m", outstanding=1)
    model = ModelEntry(id="m", name="m", endpoints=[endpoint])
    registry = ModelRegistry("m")
    registry.add(model)
    class Outbox:  # running streams are journaled as they go (usage/outbox.py)
        def __init__(self) -> None:
            self.live: dict[str, Any] = {}

        def track(self, key: str, snapshot: Any) -> None:
            self.live[key] = snapshot

        def untrack(self, key: str) -> None:
            self.live.pop(key, None)

    state = SimpleNamespace(
        engines=Engines(), usage=usage, metrics=Metrics(), registry=registry, outbox=Outbox()
    )
    engine = EngineCall(model, "/chat/completions", {}, "r-1", Ticket("user:1"))
    call = RelayCall(
        state=state,  # type: ignore[arg-type]
        identity=Identity(user_id=1, username="u", role="user"),
        route="v1.chat",
        engine=engine,
        client_wants_usage=False,
        prompt_estimate=3,
    )
    return call, usage


def _upstream(call: Any, response: _StubResponse) -> Any:
    """An already-primed upstream (what open_upstream hands to relay_stream)."""
    from chatgate.engines.upstream.failover import Upstream

    endpoint = call.model.endpoints[0]
    rest = call.state.engines.line_batches(response)
    return Upstream(endpoint, response, [], rest)  # type: ignore[arg-type]


def _content(word: str, finish: str | None = None) -> bytes:
    chunk = {
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode()


@pytest.mark.parametrize("leave_after", [0, 1, 2])
async def test_relay_stream_leaves_one_row_wherever_the_client_leaves(leave_after: int) -> None:
    from chatgate.engines.upstream.stream import StreamStats
    from chatgate.openai_api.service import relay_stream

    call, usage = _relay_call([_content("a"), _content("b")], fail=True)
    response = _StubResponse()
    upstream = _upstream(call, response)
    stream = relay_stream(call, upstream, StreamStats())
    received = [await anext(stream) for _ in range(leave_after + 1)]
    await stream.aclose()  # the client is gone
    await upstream.close()  # what the stream's owner does on the way out
    assert len(usage.rows) == 1, [r.status for r in usage.rows]
    row = usage.rows[0]
    if leave_after < 2:
        assert (row.status, row.status_code) == ("cancelled", 499)
    else:
        assert b'"error"' not in b"".join(received[:2])
        assert (row.status, row.status_code) == ("error", 502)
    assert response.closed and not response.released
    assert call.model.endpoints[0].outstanding == 0
    # Its row is on its way under the key its journaled progress had: nothing left to bill.
    assert row.record_key == call.record_key and not call.state.outbox.live


async def test_relay_stream_error_event_comes_after_the_row() -> None:
    from chatgate.engines.upstream.stream import StreamStats
    from chatgate.openai_api.service import FinalChunk, relay_stream

    call, usage = _relay_call([_content("a")], fail=True)
    response = _StubResponse()
    upstream = _upstream(call, response)
    out: list[bytes] = []
    async for data in relay_stream(call, upstream, StreamStats()):
        if b'"error"' in data:
            assert [r.status for r in usage.rows] == ["error"]
        out.append(data)
    await upstream.close()
    assert upstream.error is not None  # the owner reports it against the replica
    # The error event and [DONE] end the stream in one piece, marked as the last.
    assert isinstance(out[-1], FinalChunk)
    assert not any(isinstance(piece, FinalChunk) for piece in out[:-1])
    error_event, done = out[-1].split(b"\n\n", 1)
    assert b'"engine_disconnected"' in error_event and done == b"data: [DONE]\n\n"
    assert response.closed


async def test_relay_stream_success_releases_the_connection() -> None:
    from chatgate.engines.upstream.stream import StreamStats
    from chatgate.openai_api.service import FinalChunk, relay_stream

    call, usage = _relay_call(
        [_content("a"), _content("b", finish="stop"), b"data: [DONE]"], fail=False
    )
    response = _StubResponse()
    upstream = _upstream(call, response)
    out = [d async for d in relay_stream(call, upstream, StreamStats())]
    await upstream.close()
    assert out[-1] == b"data: [DONE]\n\n" and len(out) == 3
    assert isinstance(out[-1], FinalChunk)
    assert [(r.status, r.completion_tokens) for r in usage.rows] == [("ok", 2)]
    assert response.released and not response.closed
    assert call.model.endpoints[0].outstanding == 0


async def test_a_client_leaving_while_an_error_row_commits_leaves_one_row() -> None:
    from chatgate.engines.upstream.client import EngineError
    from chatgate.engines.upstream.failover import Upstreams
    from chatgate.errors import APIError
    from chatgate.openai_api.service import complete

    call, usage = _relay_call([], fail=False)
    gate = asyncio.Event()

    class SlowUsage(_StubUsage):
        async def record(self, row: Any) -> None:
            self.rows.append(row)
            await gate.wait()  # the commit is slow...

    class FailingEngines:
        async def open(self, *_args: Any) -> Any:
            raise EngineError("The engine failed: boom", "engine_error", 502)

    usage = SlowUsage()
    call.state.usage = usage
    call.state.upstreams = Upstreams(call.state.registry, FailingEngines(), Metrics())  # type: ignore[arg-type]
    call.model.endpoints[0].outstanding = 0
    task = asyncio.create_task(complete(call))
    for _ in range(100):
        if usage.rows:
            break
        await asyncio.sleep(0.005)
    task.cancel()  # ...and the client leaves meanwhile
    with pytest.raises((asyncio.CancelledError, APIError)):
        await task
    assert [(r.status, r.status_code) for r in usage.rows] == [("error", 502)]
    assert call.model.endpoints[0].outstanding == 0

"""GatewayMiddleware and the error handlers: request ids, security headers, body cap,
and the one error shape on every kind of failure."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.app import create_app
from chatgate.db.models import User
from chatgate.keys import service as keys
from chatgate.settings import Settings
from tests.conftest import TEST_SECRET
from tests.helpers import Gateway

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


async def key_headers(gateway: Gateway) -> dict[str, str]:
    """A fresh user's API key (stored directly: no password hashing)."""
    async with gateway.state.sessionmaker() as db:
        user = User(username=f"mw-{uuid.uuid4().hex[:10]}", password_hash="-", role="user")
        db.add(user)
        await db.commit()
        _, api_key = await keys.create_key(db, user.id, "mw key")
    return {"Authorization": f"Bearer {api_key}"}


def assert_error_shape(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"type", "message", "code", "param"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)


def assert_security_headers(response: httpx.Response, csp: bool = True) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    if csp:
        assert "default-src 'none'" in response.headers["content-security-policy"]
    else:
        assert "content-security-policy" not in response.headers


async def test_every_response_has_a_request_id(gateway: Gateway) -> None:
    auth = await key_headers(gateway)
    async with gateway.client() as http:
        responses = [
            await http.get("/health"),
            await http.get("/health/ready"),
            await http.get("/no/such/route"),
            await http.get("/v1/models"),  # 401
            await http.get("/v1/models", headers=auth),
            await http.post("/api/auth/login", json={"username": "x"}),  # 400
            await http.delete("/health"),  # 405
            await http.get("/docs"),
            await http.get("/openapi.json"),
            await http.post(
                "/v1/chat/completions",
                json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}],
                      "stream": True},
                headers=auth,
            ),
        ]
    ids = [r.headers.get("x-request-id") for r in responses]
    assert all(ids), [(r.request.url.path, r.status_code) for r in responses]
    assert all(GENERATED_ID.match(i or "") for i in ids)
    assert len(set(ids)) == len(ids)
    assert [r.headers.get_list("x-request-id") for r in responses] == [[i] for i in ids]


@pytest.mark.parametrize(
    "incoming", ["abc-123", "client.req:42_X", "a" * 64, "0123456789abcdef0123456789abcdef"]
)
async def test_a_valid_incoming_request_id_is_echoed(gateway: Gateway, incoming: str) -> None:
    async with gateway.client() as http:
        response = await http.get("/health", headers={"X-Request-ID": incoming})
        missing = await http.get("/nope", headers={"X-Request-ID": incoming})
    assert response.headers["x-request-id"] == incoming
    assert missing.headers["x-request-id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    ["has spaces", "a" * 65, "x" * 200, "semi;colon", "new\tline", "é-accent", "<script>", ""],
)
async def test_an_invalid_incoming_request_id_is_replaced(
    gateway: Gateway, incoming: str
) -> None:
    async with gateway.client() as http:
        response = await http.get(
            "/health", headers=[(b"X-Request-ID", incoming.encode("latin-1"))]
        )
    assert response.status_code == 200
    assert response.headers["x-request-id"] != incoming
    assert GENERATED_ID.match(response.headers["x-request-id"])


async def test_the_request_id_reaches_the_engine_and_the_client(gateway: Gateway) -> None:
    auth = await key_headers(gateway)
    async with gateway.client() as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
            headers={**auth, "X-Request-ID": "trace-me-123"},
        )
        generated = await http.post(
            "/v1/chat/completions",
            json={"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]},
            headers={**auth, "X-Request-ID": "bad id"},
        )
    assert response.headers["x-request-id"] == "trace-me-123"
    assert gateway.upstream.by_request_id("trace-me-123").path == "/v1/chat/completions"
    new_id = generated.headers["x-request-id"]
    assert GENERATED_ID.match(new_id)
    assert gateway.upstream.by_request_id(new_id) is not None


async def test_security_headers(gateway: Gateway) -> None:
    async with gateway.client() as http:
        for path in ("/health", "/v1/models", "/api/no/such/route", "/api/auth/verify"):
            assert_security_headers(await http.get(path))
        for path in ("/docs", "/openapi.json", "/redoc"):
            response = await http.get(path)
            assert response.status_code == 200, path
            assert_security_headers(response, csp=False)


async def test_unknown_route_is_404_with_the_error_shape(gateway: Gateway) -> None:
    async with gateway.client() as http:
        response = await http.get("/api/no/such/route")
        v1 = await http.post("/v1/no-such-endpoint", json={})
    error = assert_error_shape(response, 404, "not_found")
    assert error["type"] == "not_found_error"
    assert_error_shape(v1, 404, "not_found")


async def test_wrong_method_is_405_with_the_error_shape(gateway: Gateway) -> None:
    async with gateway.client() as http:
        response = await http.delete("/health")
    error = assert_error_shape(response, 405, "http_405")
    assert error["message"] == "Method Not Allowed"


async def test_validation_error_is_400_with_param(gateway: Gateway) -> None:
    async with gateway.client() as http:
        missing = await http.post("/api/auth/login", json={"username": "someone"})
        wrong_type = await http.post(
            "/api/auth/login", json={"username": "someone", "password": 123}
        )
        not_json = await http.post(
            "/api/auth/login", content=b"{oops", headers={"Content-Type": "application/json"}
        )
    error = assert_error_shape(missing, 400, "invalid_request")
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "password"
    assert "password" in error["message"]
    assert assert_error_shape(wrong_type, 400, "invalid_request")["param"] == "password"
    error = assert_error_shape(not_json, 400, "invalid_request")
    assert error["param"] is None  # not the byte offset of the syntax error
    assert "JSON" in error["message"]


async def test_missing_credentials_are_401_with_the_error_shape(gateway: Gateway) -> None:
    async with gateway.client() as http:
        response = await http.get("/v1/models")
        bad = await http.get("/v1/models", headers={"Authorization": "Bearer nope"})
        basic = await http.get("/v1/models", headers={"Authorization": "Basic dTpw"})
    for r in (response, bad, basic):
        error = assert_error_shape(r, 401, "invalid_api_key")
        assert error["type"] == "authentication_error"
        assert r.headers["www-authenticate"] == "Bearer"


async def test_declared_body_over_the_limit_is_413(gateway: Gateway) -> None:
    limit = gateway.settings.max_body_bytes
    async with gateway.client() as http:
        response = await http.post(
            "/api/auth/login",
            content=b"x" * (limit + 1),
            headers={"Content-Type": "application/json"},
        )
        at_limit = await http.post(
            "/api/auth/login",
            content=json.dumps({"username": "u", "password": "p" * 100}).encode(),
            headers={"Content-Type": "application/json"},
        )
    error = assert_error_shape(response, 413, "body_too_large")
    assert str(limit) in error["message"]
    assert response.headers["x-request-id"]
    assert_security_headers(response)
    assert at_limit.status_code == 401  # under the limit: reaches the handler


async def test_chunked_body_over_the_limit_is_413(gateway: Gateway) -> None:
    limit = gateway.settings.max_body_bytes

    async def body() -> AsyncIterator[bytes]:
        piece = b"y" * 65536
        sent = 0
        while sent <= limit:
            yield piece
            sent += len(piece)

    async with gateway.client() as http:
        response = await http.post(
            "/api/auth/login", content=body(), headers={"Content-Type": "application/json"}
        )
    assert_error_shape(response, 413, "body_too_large")
    assert response.headers["x-request-id"]


def bare_app(tmp_path: Path) -> Any:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        jwt_secret=TEST_SECRET,
        embedded_engine=False,
        engines=[],
    )
    app = create_app(settings)

    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    app.add_api_route("/api/boom", boom)
    return app


async def test_unhandled_error_is_500_with_request_id_and_no_details(tmp_path: Path) -> None:
    transport = httpx.ASGITransport(app=bare_app(tmp_path), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        response = await http.get("/api/boom", headers={"X-Request-ID": "boom-1"})
    error = assert_error_shape(response, 500, "internal_error")
    assert "secret" not in response.text
    assert error["message"] == "Internal server error"
    assert response.headers["x-request-id"] == "boom-1"
    assert_security_headers(response)


async def test_middleware_passes_non_http_scopes(tmp_path: Path) -> None:
    """Lifespan messages go straight through (the middleware only wraps HTTP)."""
    from chatgate.middleware import GatewayMiddleware

    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = GatewayMiddleware(inner, max_body_bytes=10)

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(_message: Any) -> None:
        raise AssertionError("nothing should be sent")

    await middleware({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]

"""HTTP hygiene: HEAD wherever GET is served (uptime monitors), and CORS that lets the
browser SDKs (openai's and anthropic's) through and lets pages read the limits' headers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from chatgate.db import migrate
from chatgate.db.models import User
from chatgate.keys import service as keys
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Gateway, start_gateway

pytestmark = pytest.mark.timeout(60)

ORIGIN = "https://chat.example.com"
# What the openai JS SDK (v4/v5) sends from a browser, and the anthropic JS SDK's own.
OPENAI_JS_HEADERS = (
    "authorization,content-type,openai-organization,openai-project,x-stainless-arch,"
    "x-stainless-lang,x-stainless-os,x-stainless-package-version,x-stainless-retry-count,"
    "x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout"
)
ANTHROPIC_JS_HEADERS = (
    "anthropic-beta,anthropic-dangerous-direct-browser-access,anthropic-version,content-type,"
    "x-api-key,x-stainless-arch,x-stainless-helper-method,x-stainless-lang,x-stainless-os,"
    "x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,"
    "x-stainless-runtime-version,x-stainless-timeout"
)


@pytest_asyncio.fixture(scope="module")
async def cors_gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: FakeUpstream
) -> AsyncIterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("cors")
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    settings = gateway_settings(tmp, url, upstream, cors_origins=[ORIGIN])
    async with start_gateway(settings, upstream) as gw:
        yield gw


async def key_headers(gateway: Gateway) -> dict[str, str]:
    async with gateway.state.sessionmaker() as db:
        user = User(username=f"hy-{uuid.uuid4().hex[:10]}", password_hash="-", role="user")
        db.add(user)
        await db.commit()
        _, api_key = await keys.create_key(db, user.id, "hygiene key")
    return {"Authorization": f"Bearer {api_key}"}


async def test_head_health_answers_like_get_without_a_body(cors_gateway: Gateway) -> None:
    async with cors_gateway.client() as http:
        get = await http.get("/health")
        head = await http.head("/health")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-type"] == "application/json"
    assert head.headers["x-request-id"]


async def test_head_on_authenticated_get_routes(cors_gateway: Gateway) -> None:
    auth = await key_headers(cors_gateway)
    async with cors_gateway.client() as http:
        ok = await http.head("/v1/models", headers=auth)
        refused = await http.head("/v1/models")
        ready = await http.head("/health/ready")
        post_only = await http.head("/v1/chat/completions", headers=auth)
    assert ok.status_code == 200 and ok.content == b""
    assert refused.status_code == 401 and refused.content == b""
    assert ready.status_code == 200
    assert post_only.status_code == 405  # nothing is served by GET there either


@pytest.mark.parametrize(
    ("path", "requested"),
    [("/v1/chat/completions", OPENAI_JS_HEADERS), ("/v1/messages", ANTHROPIC_JS_HEADERS)],
)
async def test_preflight_allows_the_sdk_headers(
    cors_gateway: Gateway, path: str, requested: str
) -> None:
    async with cors_gateway.client() as http:
        response = await http.options(
            path,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": requested,
            },
        )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == ORIGIN
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert set(requested.split(",")) <= allowed


async def test_preflight_from_another_origin_is_refused(cors_gateway: Gateway) -> None:
    async with cors_gateway.client() as http:
        response = await http.options(
            "/v1/chat/completions",
            headers={
                "Origin": "https://evil.example.com",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization",
            },
        )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_browsers_may_read_limit_and_request_id_headers(cors_gateway: Gateway) -> None:
    auth = await key_headers(cors_gateway)
    async with cors_gateway.client() as http:
        response = await http.get("/v1/models", headers={**auth, "Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {
        "retry-after",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-request-id",
    } <= exposed

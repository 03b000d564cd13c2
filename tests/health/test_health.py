"""``/health`` (liveness) and ``/health/ready`` (database, Redis, engines)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from chatgate import __version__
from chatgate.db import migrate
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Gateway, free_port, start_gateway


@asynccontextmanager
async def special_gateway(
    tmp: Path, upstream: FakeUpstream, **overrides: Any
) -> AsyncIterator[Gateway]:
    url = f"sqlite+aiosqlite:///{tmp / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    async with start_gateway(gateway_settings(tmp, url, upstream, **overrides), upstream) as gw:
        yield gw


async def test_health_is_exactly_the_seed_shape_without_auth(gateway: Gateway) -> None:
    async with gateway.client() as http:
        response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "service": "chatgate", "version": __version__}
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]


async def test_ready_reports_database_and_engines(gateway: Gateway) -> None:
    async with gateway.client() as http:
        response = await http.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    checks = body["checks"]
    assert set(checks) == {"database", "engines"}  # no Redis configured: not checked
    assert checks["database"]["ok"] is True
    assert checks["database"]["error"] is None
    assert checks["database"]["latency_ms"] >= 0
    model = checks["engines"]["fake-model"]
    assert model["ok"] is True
    (endpoint,) = model["endpoints"]
    assert endpoint["healthy"] is True and endpoint["error"] is None
    assert endpoint["url"] == gateway.upstream.url


async def test_ready_is_503_when_the_engine_is_down(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    port = free_port()
    async with special_gateway(
        tmp_path, upstream, engines=[f"fake-model=http://127.0.0.1:{port}"]
    ) as gw:
        async with gw.client() as http:
            response = await http.get("/health/ready")
            assert response.status_code == 503
            body = response.json()
            assert body["status"] == "not_ready"
            assert body["checks"]["database"]["ok"] is True
            model = body["checks"]["engines"]["fake-model"]
            assert model["ok"] is False
            (endpoint,) = model["endpoints"]
            assert endpoint["healthy"] is False
            assert isinstance(endpoint["error"], str) and "unreachable" in endpoint["error"]
            assert gw.state.registry.resolve("fake-model").endpoints[0].healthy is False

            # The engine comes up: readiness recovers without a restart.
            async with models_server(port):
                response = await http.get("/health/ready")
            assert response.status_code == 200, response.text
            endpoint = response.json()["checks"]["engines"]["fake-model"]["endpoints"][0]
            assert endpoint["healthy"] is True and endpoint["error"] is None


async def test_ready_is_503_when_the_engine_answers_with_an_error(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    port = free_port()
    async with models_server(port, status=500):
        async with special_gateway(
            tmp_path, upstream, engines=[f"fake-model=http://127.0.0.1:{port}"]
        ) as gw:
            async with gw.client() as http:
                response = await http.get("/health/ready")
    assert response.status_code == 503
    endpoint = response.json()["checks"]["engines"]["fake-model"]["endpoints"][0]
    assert endpoint == {
        "name": f"fake-model@127.0.0.1:{port}",
        "url": f"http://127.0.0.1:{port}",
        "healthy": False,
        "error": "HTTP 500",
        "failed": False,
    }


async def test_ready_checks_redis_when_configured(
    tmp_path: Path, upstream: FakeUpstream, redis_url: str
) -> None:
    async with special_gateway(tmp_path, upstream, redis_url=redis_url) as gw:
        async with gw.client() as http:
            response = await http.get("/health/ready")
    assert response.status_code == 200, response.text
    redis = response.json()["checks"]["redis"]
    assert redis["ok"] is True and redis["error"] is None and redis["latency_ms"] >= 0


async def test_ready_stays_200_degraded_when_redis_is_down(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    # Limits fail open without Redis: taking every gateway out of rotation would turn a
    # Redis outage into a full one.
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with special_gateway(tmp_path, upstream, redis_url=url) as gw:
        async with gw.client() as http:
            response = await http.get("/health/ready")
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["status"] == "ready"
            assert body["checks"]["redis"]["status"] == "degraded (fail-open)"
            assert body["checks"]["redis"]["error"]
            assert body["checks"]["database"]["ok"] is True
            assert "unavailable" not in body
            # Someone else (not this machine, no admin) sees the verdict, not the error.
            assert (await http.get("/health")).status_code == 200


@asynccontextmanager
async def models_server(port: int, status: int = 200) -> AsyncIterator[None]:
    """A minimal engine on a fixed port: only its model list."""

    async def models(_request: web.Request) -> web.Response:
        if status != 200:
            return web.json_response({"error": "down"}, status=status)
        return web.json_response({"object": "list", "data": [{"id": "fake-model"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("path", ["/health", "/health/ready"])
async def test_probes_need_no_credentials(gateway: Gateway, path: str) -> None:
    async with gateway.client() as http:
        response = await http.get(path, headers={"Authorization": "Bearer garbage"})
    assert response.status_code == 200


async def test_ready_shows_details_only_to_this_machine_and_admins(gateway: Gateway) -> None:
    """Through a proxy (X-Forwarded-For from loopback, as nginx sends it) the caller is
    remote: it gets the verdicts, not engine addresses or error texts."""
    remote = {"X-Forwarded-For": "203.0.113.7"}
    admin, user = await gateway.account("admin"), await gateway.account()
    async with gateway.client() as http:
        anonymous = await http.get("/health/ready", headers=remote)
        as_user = await http.get("/health/ready", headers={**remote, **user.key_headers})
        bad_key = await http.get(
            "/health/ready", headers={**remote, "Authorization": "Bearer sk-cg-nonsense-key"}
        )
        as_admin = await http.get("/health/ready", headers={**remote, **admin.headers})
    for response in (anonymous, as_user, bad_key):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ready"
        assert body["checks"]["database"] == {
            "ok": True,
            "latency_ms": body["checks"]["database"]["latency_ms"],
        }
        assert body["checks"]["engines"]["fake-model"] == {
            "ok": True,
            "endpoints": [{"healthy": True, "failed": False}],
        }
        assert gateway.upstream.url not in response.text
    endpoint = as_admin.json()["checks"]["engines"]["fake-model"]["endpoints"][0]
    assert endpoint["url"] == gateway.upstream.url

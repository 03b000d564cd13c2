"""The raw ASGI /v1 endpoints keep what the FastAPI routes gave: docs, 405, headers."""

from __future__ import annotations

import gc

from chatgate.runtime import GEN0_THRESHOLD
from tests.helpers import Gateway
from tests.test_middleware import assert_error_shape, key_headers


async def test_the_relayed_routes_are_documented(gateway: Gateway) -> None:
    async with gateway.client() as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    for path, required in (
        ("/v1/chat/completions", ["model", "messages"]),
        ("/v1/completions", ["model", "prompt"]),
    ):
        operation = paths[path]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert schema["required"] == required
        assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert "/v1/models" in paths


async def test_other_methods_get_405_in_the_error_shape(gateway: Gateway) -> None:
    auth = await key_headers(gateway)
    async with gateway.client() as http:
        for path in ("/v1/chat/completions", "/v1/completions"):
            response = await http.get(path, headers=auth)
            assert_error_shape(response, 405, "http_405")
            assert response.headers["x-request-id"]


async def test_a_stream_carries_the_gateway_headers(gateway: Gateway) -> None:
    auth = await key_headers(gateway)
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    async with gateway.client() as http:
        response = await http.post(
            "/v1/chat/completions", json=body, headers={**auth, "X-Request-ID": "abc-123"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["x-request-id"] == "abc-123"
    assert response.text.endswith("data: [DONE]\n\n")


async def test_a_gateway_in_a_test_leaves_the_garbage_collector_alone(
    gateway: Gateway,
) -> None:
    # Only `serve` tunes it (create_app(tune_gc=True)); tests build many apps.
    assert gc.get_threshold()[0] != GEN0_THRESHOLD

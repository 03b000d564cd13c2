"""Two `chatgate serve` processes sharing one database and Redis: a limit holds in total."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import REDIS_HOST, REDIS_PORT, require_service
from tests.e2e.harness import Served, serve_env
from tests.helpers import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Served, Served]]:
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    data_dir = tmp_path_factory.mktemp("e2e-shared")
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"

    def gateway(*args: str) -> Served:
        port = free_port()
        env = serve_env(data_dir, port, None)
        env.update(
            CHATGATE_REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/0", CHATGATE_REDIS_PREFIX=prefix
        )
        return Served(data_dir, port, env, args=list(args))

    first = gateway()
    first.start()
    engine_url = first.engine_state()["base_url"].removesuffix("/v1")
    second = gateway("--no-embedded", "--engine", f"smollm2-135m={engine_url}")
    try:
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()


def test_limit_holds_across_two_gateway_processes(two_gateways: tuple[Served, Served]) -> None:
    first, second = two_gateways
    key = first.cli("keys", "create", "--user", "admin", "--name", "shared")
    first.cli("limits", "set", "--user", "admin", "--rpm", "2")
    body = {"model": "default", "max_tokens": 1, "messages": [{"role": "user", "content": "Hi"}]}

    def call(gateway: Served) -> int:
        response = httpx.post(
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        return response.status_code

    assert [call(g) for g in (first, second, first, second)] == [200, 200, 429, 429]

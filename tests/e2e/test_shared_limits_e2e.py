"""Two `chatgate serve` processes sharing one database and Redis: a limit holds in total,
and a change made through one (a user disabled, a model disabled) holds on the other at
once, not when the other's cache runs out."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

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
            CHATGATE_REDIS_URL=f"redis://{REDIS_HOST}:{REDIS_PORT}/0",
            CHATGATE_REDIS_PREFIX=prefix,
            # Far beyond the test: only the fleet channel can make the other gateway forget.
            CHATGATE_IDENTITY_CACHE_SECONDS="600",
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


def _until(check: Callable[[], bool], timeout: float = 30) -> float:
    """Seconds until ``check`` held (bounded: the cache would hold for 600 s)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "the change never reached the other gateway"
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_user_disabled_on_one_gateway_is_refused_on_the_other(
    two_gateways: tuple[Served, Served],
) -> None:
    first, second = two_gateways
    name = f"leaver-{uuid.uuid4().hex[:6]}"
    first.cli("users", "add", name, "--password", "fleet-e2e-password")
    key = first.cli("keys", "create", "--user", name, "--name", "leaked")
    models = {"Authorization": f"Bearer {key}"}
    assert (
        httpx.get(second.url + "/v1/models", headers=models, timeout=60).status_code == 200
    )  # cached
    admin = {"Authorization": f"Bearer {first.token()}"}
    users = httpx.get(first.url + "/api/admin/users", headers=admin, timeout=60).json()
    user_id = next(u["id"] for u in users["users"] if u["username"] == name)
    changed = httpx.patch(
        first.url + f"/api/admin/users/{user_id}",
        json={"disabled": True},
        headers=admin,
        timeout=60,
    )
    assert changed.status_code == 200, changed.text
    _until(
        lambda: httpx.get(second.url + "/v1/models", headers=models, timeout=60).status_code == 401
    )


def test_a_model_disabled_on_one_gateway_is_disabled_on_the_other(
    two_gateways: tuple[Served, Served],
) -> None:
    first, second = two_gateways
    admin = {"Authorization": f"Bearer {first.token()}"}

    def listed_on_second() -> bool:
        models = httpx.get(second.url + "/v1/models", headers=admin, timeout=60).json()["data"]
        return "smollm2-135m" in [m["id"] for m in models]

    assert listed_on_second()
    url = first.url + "/api/admin/models/smollm2-135m"
    assert httpx.post(url + "/disable", headers=admin, timeout=60).status_code == 200
    try:
        _until(lambda: not listed_on_second())
    finally:
        assert httpx.post(url + "/enable", headers=admin, timeout=60).status_code == 200
    _until(listed_on_second)

"""API key scopes, credential routes closed to keys, and the loopback-only dev bypass."""

from __future__ import annotations

import pytest

from chatgate.auth.scopes import key_may_access
from chatgate.deps import is_loopback
from chatgate.keys import service as keys
from tests.helpers import Gateway


@pytest.mark.parametrize(
    ("scopes", "path", "allowed"),
    [
        ([], "/api/conversations", True),
        ([], "/api/keys", False),
        ([], "/api/users/me/password", False),
        (["openai"], "/v1/chat/completions", True),
        (["openai"], "/api/chat", False),
        (["chat"], "/api/conversations/x", True),
        (["chat"], "/api/admin/users", False),
        (["admin"], "/api/admin/users", True),
        (["chat", "openai"], "/v1/models", True),
    ],
)
def test_key_may_access(scopes: list[str], path: str, allowed: bool) -> None:
    assert key_may_access(scopes, path) is allowed


async def test_scoped_key_is_limited_to_its_routes(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.state.sessionmaker() as db:
        _, openai_only = await keys.create_key(db, account.user_id, "sdk", scopes=["openai"])
    scoped = {"Authorization": f"Bearer {openai_only}"}
    async with gateway.client() as client:
        models = await client.get("/v1/models", headers=scoped)
        chats = await client.get("/api/conversations", headers=scoped)
        unscoped_chats = await client.get("/api/conversations", headers=account.key_headers)
        make_key = await client.post("/api/keys", json={"name": "x"}, headers=account.key_headers)
        bad_scope = await client.post(
            "/api/keys", json={"name": "x", "scopes": ["root"]}, headers=account.headers
        )
    assert models.status_code == 200
    assert chats.status_code == 403 and chats.json()["error"]["code"] == "forbidden"
    assert unscoped_chats.status_code == 200
    assert make_key.status_code == 403, "a key cannot mint more keys"
    assert bad_scope.status_code == 400


@pytest.mark.parametrize(
    ("client", "expected"),
    [("127.0.0.1", True), ("::1", True), ("localhost", True), ("10.1.2.3", False), ("", False)],
)
def test_development_bypass_needs_a_loopback_client(client: str, expected: bool) -> None:
    assert is_loopback(client) is expected

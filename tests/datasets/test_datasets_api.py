"""``/api/admin/datasets`` on SQLite and PostgreSQL: chats rated through the API become a
scrubbed, split, versioned dataset; users who opted out never appear in it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.helpers import Account, Gateway

pytestmark = pytest.mark.usefixtures("fast_passwords")


async def call(
    gateway: Gateway, account: Account, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    async with gateway.client() as client:
        return await client.request(method, path, headers=account.headers, **kwargs)


async def chat_and_rate(
    gateway: Gateway, account: Account, question: str, rating: str, correction: str | None = None
) -> int:
    """A real chat turn through /api/chat, rated: the answer's message id."""
    events, response = await gateway.chat(account, message=question)
    assert response.status_code == 200, response.text
    ids = events[0].data
    rated = await call(
        gateway,
        account,
        "PUT",
        f"/api/conversations/{ids['conversation_id']}/messages/{ids['assistant_message_id']}/feedback",
        json={"rating": rating, "correction": correction},
    )
    assert rated.status_code == 200, rated.text
    answer_id: int = ids["assistant_message_id"]
    return answer_id


async def export(gateway: Gateway, admin: Account, **body: Any) -> dict[str, Any]:
    response = await call(gateway, admin, "POST", "/api/admin/datasets", json=body)
    assert response.status_code == 201, response.text
    metadata: dict[str, Any] = response.json()
    return metadata


async def examples(gateway: Gateway, admin: Account, version: str, name: str) -> list[Any]:
    response = await call(gateway, admin, "GET", f"/api/admin/datasets/{version}/files/{name}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


async def test_rated_chats_export_as_a_versioned_dataset(gateway: Gateway) -> None:
    admin = await gateway.account("admin")
    alice, bob, carol = [await gateway.account() for _ in range(3)]
    await call(gateway, bob, "PUT", "/api/users/me/training", json={"opted_in": False})
    await chat_and_rate(gateway, alice, "Email me at alice@example.com, my IP is 10.1.2.3", "up")
    await chat_and_rate(gateway, alice, "Call 555-123-4567 about France", "down", "Call me!")
    await chat_and_rate(gateway, alice, "A thumbs-down without correction", "down")
    await chat_and_rate(gateway, bob, "Bob's private question", "up")
    for i in range(4):
        await chat_and_rate(gateway, carol, f"Carol asks question {i}", "up")
    await chat_and_rate(gateway, carol, "Carol asks question 0", "up")  # a duplicate

    usernames = sorted(a.username for a in (alice, bob, carol))
    metadata = await export(gateway, admin, usernames=usernames, holdout=0.25)
    counts = metadata["counts"]
    # endorsed: alice's up and corrected answers, carol's five (one duplicate).
    assert counts["rated"] == 7 and counts["duplicates"] == 1 and counts["opted_out"] == 1
    assert counts["examples"] == 6 == counts["train"] + counts["heldout"]
    assert counts["heldout"] >= 1
    assert metadata["scrubbed"] == {"email": 1, "ip": 1, "phone": 1}
    assert metadata["models"] == {"fake-model": 6}
    assert metadata["hash"].startswith("sha256:") and metadata["hash"][7:23] == metadata["version"]
    assert metadata["filters"]["usernames"] == usernames
    assert metadata["filters"]["default_opt_in"] is True

    version = metadata["version"]
    rows = [
        *await examples(gateway, admin, version, "train.jsonl"),
        *await examples(gateway, admin, version, "heldout.jsonl"),
    ]
    assert len(rows) == 6 and all(set(row) == {"messages"} for row in rows)
    text = json.dumps(rows)
    assert "Bob" not in text and "alice@example.com" not in text and "10.1.2.3" not in text
    assert "thumbs-down without" not in text
    by_question = {row["messages"][0]["content"]: row["messages"] for row in rows}
    assert by_question["Email me at [email], my IP is [ip]"][-1] == {
        "role": "assistant", "content": "Paris is the capital of France.",
    }  # fmt: skip
    assert by_question["Call [phone] about France"][-1]["content"] == "Call me!"

    # The same conversations give the same version; it is listed and can be read back.
    again = await export(gateway, admin, usernames=usernames, holdout=0.25)
    assert (again["version"], again["hash"]) == (version, metadata["hash"])
    listed = await call(gateway, admin, "GET", "/api/admin/datasets")
    assert version in [d["version"] for d in listed.json()["datasets"]]
    one = await call(gateway, admin, "GET", f"/api/admin/datasets/{version}")
    assert one.json()["counts"] == counts
    meta_file = await call(
        gateway, admin, "GET", f"/api/admin/datasets/{version}/files/metadata.json"
    )
    assert meta_file.json()["version"] == version

    # Other filters: only corrected answers; a held-out share of zero.
    corrected = await export(gateway, admin, usernames=usernames, rating="corrected", holdout=0)
    assert (corrected["counts"]["train"], corrected["counts"]["heldout"]) == (1, 0)
    longer = await export(gateway, admin, usernames=usernames, min_chars=10, holdout=0)
    assert longer["counts"]["too_short"] == 1  # "Call me!" is 8 characters

    deleted = await call(gateway, admin, "DELETE", f"/api/admin/datasets/{version}")
    assert deleted.status_code == 204
    gone = await call(gateway, admin, "GET", f"/api/admin/datasets/{version}/files/train.jsonl")
    assert gone.status_code == 404


async def test_opting_out_later_removes_a_user_from_new_exports(gateway: Gateway) -> None:
    admin, user = await gateway.account("admin"), await gateway.account()
    await chat_and_rate(gateway, user, "Something worth learning", "up")
    before = await export(gateway, admin, usernames=[user.username])
    assert before["counts"]["examples"] == 1
    await call(gateway, user, "PUT", "/api/users/me/training", json={"opted_in": False})
    after = await export(gateway, admin, usernames=[user.username])
    assert after["counts"]["examples"] == 0 and after["counts"]["opted_out"] == 1
    assert after["version"] != before["version"]


async def test_model_and_date_filters(gateway: Gateway) -> None:
    admin, user = await gateway.account("admin"), await gateway.account()
    messages = [
        {"role": "user", "content": "What is tuned?"},
        {"role": "assistant", "content": "The tuned answer.", "model": "fake-model:tuned@1"},
    ]
    created = await call(
        gateway, user, "POST", "/api/conversations/import", json={"messages": messages}
    )
    opened = await call(gateway, user, "GET", f"/api/conversations/{created.json()['id']}")
    conversation = opened.json()
    answer_id = conversation["messages"][1]["id"]
    await call(
        gateway, user, "PUT",
        f"/api/conversations/{conversation['id']}/messages/{answer_id}/feedback",
        json={"rating": "up"},
    )  # fmt: skip
    await chat_and_rate(gateway, user, "Base model question", "up")
    tuned = await export(gateway, admin, usernames=[user.username], model="fake-model:tuned@1")
    assert tuned["models"] == {"fake-model:tuned@1": 1}
    future = await export(gateway, admin, usernames=[user.username], since="2999-01-01T00:00:00Z")
    assert future["counts"]["rated"] == 0


async def test_only_admins_and_valid_requests(gateway: Gateway) -> None:
    admin, user = await gateway.account("admin"), await gateway.account()
    for method, path in [("GET", "/api/admin/datasets"), ("POST", "/api/admin/datasets")]:
        response = await call(gateway, user, method, path, json={})
        assert response.status_code == 403, response.text
    bad_bodies: list[dict[str, Any]] = [
        {"rating": "great"}, {"holdout": 0.9}, {"min_chars": -1}, {"usernames": "alice"},
        {"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    ]  # fmt: skip
    for body in bad_bodies:
        response = await call(gateway, admin, "POST", "/api/admin/datasets", json=body)
        assert response.status_code == 400, (body, response.text)
    body = {"usernames": ["nobody-here"]}
    response = await call(gateway, admin, "POST", "/api/admin/datasets", json=body)
    assert response.status_code == 404
    for path in [
        "/api/admin/datasets/..%2F..%2Fjwt_secret",
        "/api/admin/datasets/XYZ/files/train.jsonl",
        "/api/admin/datasets/0123456789abcdef/files/secret.txt",
    ]:
        response = await call(gateway, admin, "GET", path)
        assert response.status_code in (400, 404), (path, response.text)
    response = await call(gateway, admin, "GET", "/api/admin/datasets/0123456789abcdef")
    assert response.status_code == 404

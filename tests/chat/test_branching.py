"""Regenerate and edit-and-resend: new branches that never mix with the old ones."""

from __future__ import annotations

import json
from typing import Any

from tests.helpers import Account, Gateway, text_of


async def sent_messages(gateway: Gateway, account: Account, **body: Any) -> list[dict[str, str]]:
    """Chat with the echo directive: the answer is the payload the engine received."""
    events, response = await gateway.chat(account, **body)
    assert response.status_code == 200, response.text
    messages: list[dict[str, str]] = json.loads(text_of(events))["messages"]
    return messages


async def detail(gateway: Gateway, account: Account, conversation_id: str) -> dict[str, Any]:
    async with gateway.client() as client:
        response = await client.get(
            f"/api/conversations/{conversation_id}", headers=account.headers
        )
    body: dict[str, Any] = response.json()
    return body


async def test_regenerate_answers_the_same_question_again(gateway: Gateway) -> None:
    account = await gateway.account()
    first, _ = await gateway.chat(account, message="question one [[echo]]")
    ids = first[0].data
    again = await sent_messages(
        gateway,
        account,
        conversation_id=ids["conversation_id"],
        parent_id=ids["user_message_id"],
        regenerate=True,
    )
    assert again == [{"role": "user", "content": "question one [[echo]]"}]
    messages = (await detail(gateway, account, ids["conversation_id"]))["messages"]
    assistants = [m for m in messages if m["role"] == "assistant"]
    assert len(messages) == 3 and len(assistants) == 2
    assert all(m["parent_id"] == ids["user_message_id"] for m in assistants)


async def test_edit_and_resend_branches_from_the_parent(gateway: Gateway) -> None:
    account = await gateway.account()
    first, _ = await gateway.chat(account, message="first")
    ids = first[0].data
    await gateway.chat(account, conversation_id=ids["conversation_id"], message="second")
    # edit "second": the new message follows the first answer, not the old "second"
    edited = await sent_messages(
        gateway,
        account,
        conversation_id=ids["conversation_id"],
        parent_id=ids["assistant_message_id"],
        message="second, edited [[echo]]",
    )
    assert [m["content"] for m in edited] == [
        "first",
        "Paris is the capital of France.",
        "second, edited [[echo]]",
    ]
    # a plain follow-up continues the newest branch only
    follow = await sent_messages(
        gateway, account, conversation_id=ids["conversation_id"], message="third [[echo]]"
    )
    assert [m["content"] for m in follow][:3] == [
        "first",
        "Paris is the capital of France.",
        "second, edited [[echo]]",
    ]
    assert "second" not in [m["content"] for m in follow]


async def test_edit_of_the_first_message_starts_a_new_root(gateway: Gateway) -> None:
    account = await gateway.account()
    first, _ = await gateway.chat(account, message="original")
    ids = first[0].data
    edited = await sent_messages(
        gateway,
        account,
        conversation_id=ids["conversation_id"],
        parent_id=None,
        message="replacement [[echo]]",
    )
    assert edited == [{"role": "user", "content": "replacement [[echo]]"}]


async def test_branch_requests_are_validated(gateway: Gateway) -> None:
    owner, other = await gateway.account(), await gateway.account()
    first, _ = await gateway.chat(owner, message="hello")
    ids = first[0].data
    foreign, _ = await gateway.chat(other, message="mine")
    cases = [
        (
            {
                "conversation_id": ids["conversation_id"],
                "parent_id": ids["assistant_message_id"],
                "regenerate": True,
            },
            400,
        ),
        (
            {
                "conversation_id": ids["conversation_id"],
                "parent_id": foreign[0].data["user_message_id"],
                "message": "x",
            },
            404,
        ),
        ({"parent_id": ids["user_message_id"], "regenerate": True}, 400),
        (
            {
                "conversation_id": ids["conversation_id"],
                "regenerate": True,
                "message": "x",
                "parent_id": ids["user_message_id"],
            },
            400,
        ),
    ]
    async with gateway.client() as client:
        for body, status in cases:
            response = await client.post("/api/chat", json=body, headers=owner.headers)
            assert response.status_code == status, (body, response.text)

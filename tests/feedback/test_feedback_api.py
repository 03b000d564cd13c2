"""Rating answers over HTTP on SQLite and PostgreSQL: only the owner rates, a rating is
replaced or withdrawn, admins read rates per model, users opt in or out of training."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from chatgate.db.models import MessageFeedback
from tests.helpers import Account, Gateway

pytestmark = pytest.mark.usefixtures("fast_passwords")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"type", "message", "code", "param"}
    if code is not None:
        assert error["code"] == code, error


async def answered(gateway: Gateway, account: Account, message: str) -> tuple[str, int, int]:
    """A chat turn: (conversation id, user message id, assistant message id)."""
    events, response = await gateway.chat(account, message=message)
    assert response.status_code == 200, response.text
    assert events[-1].event == "done" and events[-1].data["status"] == "complete"
    ids = events[0].data
    return ids["conversation_id"], ids["user_message_id"], ids["assistant_message_id"]


def path(conversation_id: str, message_id: int) -> str:
    return f"/api/conversations/{conversation_id}/messages/{message_id}/feedback"


async def rate(
    gateway: Gateway, account: Account, conversation_id: str, message_id: int, **body: Any
) -> httpx.Response:
    async with gateway.client() as client:
        return await client.put(
            path(conversation_id, message_id), json=body, headers=account.headers
        )


async def listed(gateway: Gateway, account: Account, conversation_id: str) -> list[dict[str, Any]]:
    async with gateway.client() as client:
        response = await client.get(
            f"/api/conversations/{conversation_id}/feedback", headers=account.headers
        )
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["feedback"]
    return rows


async def stored_count(gateway: Gateway, message_id: int) -> int:
    async with gateway.state.sessionmaker() as db:
        query = select(func.count()).where(MessageFeedback.message_id == message_id)
        return int(await db.scalar(query) or 0)


async def test_rate_replace_and_withdraw(gateway: Gateway) -> None:
    account = await gateway.account()
    conversation_id, _, answer_id = await answered(gateway, account, "rate me")
    response = await rate(gateway, account, conversation_id, answer_id, rating="up")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message_id"] == answer_id and body["rating"] == "up"
    assert body["correction"] is None and body["model"] == "fake-model"

    corrected = "Paris is the capital and largest city of France."
    response = await rate(
        gateway, account, conversation_id, answer_id, rating="down", correction=corrected
    )
    assert response.status_code == 200, response.text
    rows = await listed(gateway, account, conversation_id)
    assert [(r["message_id"], r["rating"], r["correction"]) for r in rows] == [
        (answer_id, "down", corrected)
    ]
    assert await stored_count(gateway, answer_id) == 1  # replaced, not added

    # A blank correction is no correction.
    await rate(gateway, account, conversation_id, answer_id, rating="down", correction="  ")
    assert (await listed(gateway, account, conversation_id))[0]["correction"] is None

    async with gateway.client() as client:
        for _ in range(2):  # withdrawing twice is fine
            response = await client.delete(
                path(conversation_id, answer_id), headers=account.headers
            )
            assert response.status_code == 204, response.text
    assert await listed(gateway, account, conversation_id) == []


async def test_only_the_owner_rates_and_only_answers(gateway: Gateway) -> None:
    owner, other = await gateway.account(), await gateway.account()
    conversation_id, question_id, answer_id = await answered(gateway, owner, "mine")
    other_conversation, _, other_answer = await answered(gateway, other, "theirs")

    response = await rate(gateway, other, conversation_id, answer_id, rating="up")
    assert_error(response, 404, "not_found")
    async with gateway.client() as client:
        response = await client.get(
            f"/api/conversations/{conversation_id}/feedback", headers=other.headers
        )
        assert_error(response, 404)
        response = await client.delete(path(conversation_id, answer_id), headers=other.headers)
        assert_error(response, 404)
    # Another conversation's message under this conversation's id: not found either.
    assert_error(await rate(gateway, owner, conversation_id, other_answer, rating="up"), 404)
    assert_error(await rate(gateway, other, other_conversation, answer_id, rating="up"), 404)
    # Questions are not rated.
    response = await rate(gateway, owner, conversation_id, question_id, rating="up")
    assert_error(response, 409, "not_rateable")
    assert await stored_count(gateway, answer_id) == 0


async def test_concurrent_first_ratings_leave_one_row(gateway: Gateway) -> None:
    account = await gateway.account()
    conversation_id, _, answer_id = await answered(gateway, account, "many clicks")
    ratings = ["up", "down"] * 3
    responses = await asyncio.gather(
        *(rate(gateway, account, conversation_id, answer_id, rating=r) for r in ratings)
    )
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 409} and 200 in statuses, [r.text for r in responses]
    assert await stored_count(gateway, answer_id) == 1


@pytest.mark.parametrize(
    "body",
    [{"rating": "meh"}, {}, {"rating": "up", "correction": 5}, {"rating": ["up"]},
     {"rating": "up", "correction": "x" * 100_001}],
)  # fmt: skip
async def test_invalid_ratings_are_400(gateway: Gateway, body: dict[str, Any]) -> None:
    account = await gateway.account()
    conversation_id, _, answer_id = await answered(gateway, account, "invalid")
    assert_error(await rate(gateway, account, conversation_id, answer_id, **body), 400)


async def test_deleting_the_conversation_deletes_its_ratings(gateway: Gateway) -> None:
    account = await gateway.account()
    conversation_id, _, answer_id = await answered(gateway, account, "short lived")
    assert (await rate(gateway, account, conversation_id, answer_id, rating="up")).is_success
    async with gateway.client() as client:
        response = await client.delete(
            f"/api/conversations/{conversation_id}", headers=account.headers
        )
    assert response.status_code == 204
    assert await stored_count(gateway, answer_id) == 0


async def imported(gateway: Gateway, account: Account, model: str, turns: int) -> dict[str, Any]:
    messages = []
    for i in range(turns):
        messages += [
            {"role": "user", "content": f"question {i}"},
            {"role": "assistant", "content": f"answer {i}", "model": model},
        ]
    async with gateway.client() as client:
        response = await client.post(
            "/api/conversations/import", json={"messages": messages}, headers=account.headers
        )
        assert response.status_code == 201, response.text
        detail = await client.get(
            f"/api/conversations/{response.json()['id']}", headers=account.headers
        )
    body: dict[str, Any] = detail.json()
    return body


async def summary(gateway: Gateway, account: Account, **params: Any) -> httpx.Response:
    async with gateway.client() as client:
        return await client.get(
            "/api/admin/feedback/summary", params=params, headers=account.headers
        )


async def test_admins_read_rates_per_model(gateway: Gateway) -> None:
    admin, user = await gateway.account("admin"), await gateway.account()
    start = datetime.now(UTC) - timedelta(seconds=1)
    base = await imported(gateway, user, "base-model", 3)
    tuned = await imported(gateway, user, "base-model:tuned@2", 2)
    ratings = [("up", None), ("up", "better answer"), ("down", None)]
    answers = [m for m in base["messages"] if m["role"] == "assistant"]
    for message, (rating, correction) in zip(answers, ratings, strict=True):
        response = await rate(
            gateway, user, base["id"], message["id"], rating=rating, correction=correction
        )
        assert response.status_code == 200, response.text
    tuned_answer = next(m for m in tuned["messages"] if m["role"] == "assistant")
    assert (await rate(gateway, user, tuned["id"], tuned_answer["id"], rating="up")).is_success

    response = await summary(gateway, admin, since=start.isoformat())
    assert response.status_code == 200, response.text
    by_model = {row["model"]: row for row in response.json()["models"]}
    assert by_model["base-model"] == {
        "model": "base-model", "answers": 3, "rated": 3, "up": 2, "down": 1, "corrected": 1,
        "up_rate": 0.6667, "down_rate": 0.3333, "rated_share": 1.0,
    }  # fmt: skip
    assert by_model["base-model:tuned@2"] == {
        "model": "base-model:tuned@2", "answers": 2, "rated": 1, "up": 1, "down": 0,
        "corrected": 0, "up_rate": 1.0, "down_rate": 0.0, "rated_share": 0.5,
    }  # fmt: skip
    totals = response.json()["totals"]  # (earlier tests' answers may fall in the window too)
    rows = response.json()["models"]
    for key in ("answers", "rated", "up", "down", "corrected"):
        assert totals[key] == sum(row[key] for row in rows), key
    assert totals["model"] is None and totals["up"] >= 3

    only = await summary(gateway, admin, since=start.isoformat(), model="base-model:tuned@2")
    assert [row["model"] for row in only.json()["models"]] == ["base-model:tuned@2"]
    before = await summary(gateway, admin, until=start.isoformat(), model="base-model")
    assert before.json()["models"] == []
    assert_error(await summary(gateway, user), 403)
    later = (start + timedelta(hours=1)).isoformat()
    assert_error(await summary(gateway, admin, since=later, until=start.isoformat()), 400)


async def consent(gateway: Gateway, account: Account, **body: Any) -> dict[str, Any]:
    async with gateway.client() as client:
        if body:
            response = await client.put(
                "/api/users/me/training", json=body, headers=account.headers
            )
        else:
            response = await client.get("/api/users/me/training", headers=account.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


async def test_training_opt_out_is_stored_per_user(gateway: Gateway) -> None:
    account, other = await gateway.account(), await gateway.account()
    # The default (CHATGATE_TRAINING_DEFAULT_OPT_IN) is in, and the user never chose.
    assert await consent(gateway, account) == {"opted_in": True, "choice": None, "default": True}
    assert (await consent(gateway, account, opted_in=False))["opted_in"] is False
    assert await consent(gateway, account) == {"opted_in": False, "choice": False, "default": True}
    assert (await consent(gateway, other))["opted_in"] is True  # one user's choice only
    assert await consent(gateway, account, opted_in=None) == {
        "opted_in": True, "choice": None, "default": True,
    }  # fmt: skip
    async with gateway.client() as client:
        response = await client.put(
            "/api/users/me/training", json={"opted_in": "no"}, headers=account.headers
        )
        assert_error(response, 400)
        response = await client.get("/api/users/me/training")
        assert_error(response, 401)

"""/api/conversations: ownership (no IDOR), paging, full-text search, rename/archive/delete,
export and import, on SQLite (FTS5) and PostgreSQL (tsvector)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from chatgate.db.models import Conversation, Message
from tests.helpers import Account, Gateway, parse_sse

ANSWER = "Paris is the capital of France."


pytestmark = pytest.mark.usefixtures("fast_passwords")


def word() -> str:
    """A word no other test (or user) has written."""
    return "w" + uuid.uuid4().hex[:12]


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"type", "message", "code", "param"}
    if code is not None:
        assert error["code"] == code
    return error


async def chat(gateway: Gateway, account: Account, message: str) -> str:
    events, response = await gateway.chat(account, message=message)
    assert response.status_code == 200, response.text
    assert events[-1].event == "done" and events[-1].data["status"] == "complete"
    conversation_id: str = events[0].data["conversation_id"]
    return conversation_id


async def create(gateway: Gateway, account: Account, **body: Any) -> dict[str, Any]:
    async with gateway.client() as client:
        response = await client.post("/api/conversations", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def listing(
    gateway: Gateway, account: Account, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    async with gateway.client() as client:
        response = await client.get("/api/conversations", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"conversations", "next_cursor"}
    return body["conversations"], body["next_cursor"]


async def search(gateway: Gateway, account: Account, q: str, **params: Any) -> list[str]:
    rows, _ = await listing(gateway, account, q=q, limit=100, **params)
    return [row["id"] for row in rows]


async def rename(gateway: Gateway, account: Account, conversation_id: str, title: str) -> None:
    async with gateway.client() as client:
        response = await client.patch(
            f"/api/conversations/{conversation_id}", json={"title": title},
            headers=account.headers,
        )
    assert response.status_code == 200, response.text


async def message_count(gateway: Gateway, conversation_id: str) -> int:
    async with gateway.state.sessionmaker() as db:
        count = await db.scalar(
            select(func.count()).select_from(Message)
            .where(Message.conversation_id == conversation_id)
        )
    return int(count or 0)


# --- basics ------------------------------------------------------------------------------


async def test_create_and_get(gateway: Gateway) -> None:
    account = await gateway.account()
    created = await create(
        gateway, account, title="Trip planning", model="fake-model", system_prompt="Be brief."
    )
    assert created["title"] == "Trip planning" and created["model"] == "fake-model"
    assert created["system_prompt"] == "Be brief." and created["archived"] is False
    uuid.UUID(created["id"])  # random, not guessable
    default = await create(gateway, account)
    assert default["title"] == "New chat"
    async with gateway.client() as client:
        response = await client.get(f"/api/conversations/{created['id']}", headers=account.headers)
    assert response.status_code == 200
    detail = response.json()
    assert detail["messages"] == [] and detail["active_generation_id"] is None
    assert {k: detail[k] for k in created} == created


async def test_chat_messages_are_listed_in_order(gateway: Gateway) -> None:
    account = await gateway.account()
    conversation_id = await chat(gateway, account, "What is the capital of France?")
    events, _ = await gateway.chat(
        account, conversation_id=conversation_id, message="And of Germany?"
    )
    assert events[-1].event == "done"
    async with gateway.client() as client:
        detail = (await client.get(
            f"/api/conversations/{conversation_id}", headers=account.headers
        )).json()
    messages = detail["messages"]
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "What is the capital of France?"),
        ("assistant", ANSWER),
        ("user", "And of Germany?"),
        ("assistant", ANSWER),
    ]
    assert messages[0]["parent_id"] is None
    assert [m["parent_id"] for m in messages[1:]] == [m["id"] for m in messages[:-1]]
    assert all(m["status"] == "complete" for m in messages)


async def test_unknown_conversation_is_404(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        for path in (f"/api/conversations/{uuid.uuid4()}", "/api/conversations/not-a-uuid"):
            assert_error(await client.get(path, headers=account.headers), 404, "not_found")
            assert_error(await client.delete(path, headers=account.headers), 404)


async def test_requires_authentication(gateway: Gateway) -> None:
    async with gateway.client() as client:
        for method, path in (
            ("GET", "/api/conversations"),
            ("POST", "/api/conversations"),
            ("GET", f"/api/conversations/{uuid.uuid4()}"),
            ("POST", "/api/conversations/import"),
        ):
            response = await client.request(method, path, json={} if method == "POST" else None)
            assert_error(response, 401)


# --- ownership ---------------------------------------------------------------------------


async def test_other_users_get_404_never_403(gateway: Gateway) -> None:
    owner = await gateway.account()
    intruder = await gateway.account()
    secret = word()
    conversation_id = await chat(gateway, owner, f"My secret plan {secret}")
    base = f"/api/conversations/{conversation_id}"
    async with gateway.client() as client:
        for headers in (intruder.headers, intruder.key_headers):
            attempts = [
                await client.get(base, headers=headers),
                await client.patch(
                    base, json={"title": "pwned", "archived": True}, headers=headers
                ),
                await client.delete(base, headers=headers),
                await client.get(f"{base}/export", headers=headers),
                await client.get(f"{base}/export?format=markdown", headers=headers),
            ]
            for response in attempts:
                error = assert_error(response, 404, "not_found")
                assert secret not in response.text
                assert error["message"] == "Conversation not found"
        # Continuing someone else's conversation through /api/chat is refused as well.
        response = await client.post(
            "/api/chat",
            json={"conversation_id": conversation_id, "message": "hi"},
            headers=intruder.headers,
        )
        assert_error(response, 404)
        owned = await client.get(base, headers=owner.headers)
    assert owned.status_code == 200
    detail = owned.json()
    assert detail["title"] != "pwned" and detail["archived"] is False
    assert len(detail["messages"]) == 2
    for archived in (False, True):
        rows, _ = await listing(gateway, intruder, archived=archived)
        assert conversation_id not in [row["id"] for row in rows]


async def test_lists_only_show_own_conversations(gateway: Gateway) -> None:
    alice = await gateway.account()
    bob = await gateway.account()
    alice_ids = {(await create(gateway, alice, title="alice chat"))["id"] for _ in range(3)}
    bob_ids = {(await create(gateway, bob, title="bob chat"))["id"] for _ in range(2)}
    alice_rows, _ = await listing(gateway, alice)
    bob_rows, _ = await listing(gateway, bob)
    assert {row["id"] for row in alice_rows} == alice_ids
    assert {row["id"] for row in bob_rows} == bob_ids


# --- paging ------------------------------------------------------------------------------


async def test_pages_cover_everything_once_recent_first(gateway: Gateway) -> None:
    account = await gateway.account()
    created = [(await create(gateway, account, title=f"chat {i}"))["id"] for i in range(7)]
    # Touch the oldest: it moves to the top.
    await rename(gateway, account, created[0], "chat 0 (renamed)")
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["before"] = cursor
        rows, cursor = await listing(gateway, account, **params)
        pages += 1
        assert len(rows) <= 3
        seen += rows
        if cursor is None:
            break
        assert len(rows) == 3
        assert pages < 10
    assert pages == 3
    ids = [row["id"] for row in seen]
    assert len(ids) == len(set(ids)) == 7
    assert set(ids) == set(created)
    assert ids[0] == created[0]
    assert ids[1:] == list(reversed(created[1:]))
    stamps = [datetime.fromisoformat(row["updated_at"]) for row in seen]
    assert stamps == sorted(stamps, reverse=True)
    # Exactly one page: no cursor.
    rows, cursor = await listing(gateway, account, limit=7)
    assert len(rows) == 7 and cursor is None
    rows, cursor = await listing(gateway, account, limit=6)
    assert len(rows) == 6 and cursor is not None


async def test_pages_are_stable_when_timestamps_tie(gateway: Gateway) -> None:
    account = await gateway.account()
    ids = [(await create(gateway, account))["id"] for _ in range(5)]
    async with gateway.state.sessionmaker() as db:
        rows = (await db.scalars(select(Conversation).where(Conversation.id.in_(ids)))).all()
        same = rows[0].updated_at
        for row in rows:
            row.updated_at = same
        await db.commit()
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"before": cursor} if cursor else {})}
        rows_page, cursor = await listing(gateway, account, **params)
        seen += [row["id"] for row in rows_page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"before": "not-a-cursor"}, "before"),
        ({"before": "bm90IGEgZGF0ZXx4"}, "before"),  # base64 of "not a date|x"
    ],
)
async def test_bad_paging_parameters_are_400(
    gateway: Gateway, params: dict[str, Any], param: str
) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.get("/api/conversations", params=params, headers=account.headers)
    error = assert_error(response, 400)
    assert error["param"] is not None and error["param"].endswith(param)


# --- search ------------------------------------------------------------------------------


async def test_search_by_title_prefix_and_all_words(gateway: Gateway) -> None:
    account = await gateway.account()
    unique = word()
    target = (await create(gateway, account, title=f"Quarterly {unique} budget review"))["id"]
    other = (await create(gateway, account, title=f"Weekly {unique} standup"))["id"]
    await create(gateway, account, title="Unrelated")
    assert set(await search(gateway, account, unique)) == {target, other}
    assert set(await search(gateway, account, unique[:6])) == {target, other}  # prefix
    assert await search(gateway, account, f"{unique} budget") == [target]  # every word
    assert await search(gateway, account, f"quart {unique[:8]} REV") == [target]
    assert await search(gateway, account, f"{unique} budget standup") == []
    assert await search(gateway, account, f"{unique} nonexistentword") == []
    assert await search(gateway, account, unique[1:]) == []  # a prefix, not a substring


async def test_search_by_message_content(gateway: Gateway) -> None:
    account = await gateway.account()
    unique = word()
    conversation_id = await chat(gateway, account, f"Tell me about {unique} and volcanoes")
    await rename(gateway, account, conversation_id, "Renamed chat")
    # The words live only in the messages now.
    assert await search(gateway, account, unique) == [conversation_id]
    assert await search(gateway, account, f"volc {unique[:7]}") == [conversation_id]
    # The assistant's answer is searchable too (it is written as the stream ends).
    assert conversation_id in await search(gateway, account, "capit franc")
    # The new title is searchable, the old one (only in the title) is gone.
    assert conversation_id in await search(gateway, account, "renamed")


async def test_search_korean(gateway: Gateway) -> None:
    account = await gateway.account()
    conversation_id = await chat(gateway, account, "안녕하세요! 오늘 날씨 어때요?")
    for query in ("날씨", "안녕", "안녕하세요", "오늘 날씨", "날"):
        assert conversation_id in await search(gateway, account, query), query
    await rename(gateway, account, conversation_id, "Weather")
    assert conversation_id in await search(gateway, account, "날씨")  # via the message
    assert conversation_id not in await search(gateway, account, "날씨 내일")
    titled = (await create(gateway, account, title="서울 맛집 추천"))["id"]
    assert await search(gateway, account, "맛집") == [titled]


async def test_search_words_with_dots_and_dashes(gateway: Gateway) -> None:
    """Hosts, file names and versions are found by the whole word on both backends."""
    account = await gateway.account()
    unique = word()
    conversation_id = await chat(
        gateway, account, f"Deploy {unique}.example.com with report.pdf on v1.2.3 e-mail"
    )
    await rename(gateway, account, conversation_id, "Deploy notes")
    for query in (
        f"{unique}.example.com", f"{unique}.example", unique, "report.pdf", "v1.2.3", "e-mail",
    ):
        assert conversation_id in await search(gateway, account, query), query


async def test_search_never_leaks_other_users(gateway: Gateway) -> None:
    alice = await gateway.account()
    bob = await gateway.account()
    unique = word()
    alice_chat = await chat(gateway, alice, f"alice writes {unique}")
    alice_titled = (await create(gateway, alice, title=f"title {unique}"))["id"]
    assert set(await search(gateway, alice, unique)) == {alice_chat, alice_titled}
    assert await search(gateway, bob, unique) == []
    assert await search(gateway, bob, unique, archived="true") == []
    bob_chat = await chat(gateway, bob, "bob asks about capitals")
    # A word every conversation has: each user sees only their own.
    assert await search(gateway, bob, "paris") == [bob_chat]
    assert bob_chat not in await search(gateway, alice, "paris")


ODD_QUERIES = [
    "!!!",
    "   ",
    "*",
    '"',
    "'",
    "\\",
    "%",
    "_",
    "___ _",
    "'; DROP TABLE conversations; --",
    'NEAR("a" "b") OR title:x AND NOT y*',
    "a & b | !c <-> d:* (e",
    "x" * 400,
]


async def test_search_is_safe_with_odd_input(gateway: Gateway) -> None:
    account = await gateway.account()
    titled = (await create(gateway, account, title="Drop table near"))["id"]
    async with gateway.client() as client:
        for query in ODD_QUERIES:
            response = await client.get(
                "/api/conversations", params={"q": query}, headers=account.headers
            )
            assert response.status_code == 200, (query, response.text)
            assert {row["id"] for row in response.json()["conversations"]} <= {titled}
    # Operators in the query are plain words: "drop table" finds the title, nothing breaks.
    assert await search(gateway, account, "'; DROP TABLE conversations; --") == []
    assert await search(gateway, account, "'; DROP TABLE") == [titled]
    assert await search(gateway, account, 'NEAR("drop" "table")') == [titled]


async def test_search_respects_archive_and_delete(gateway: Gateway) -> None:
    account = await gateway.account()
    unique = word()
    archived = (await create(gateway, account, title=f"{unique} archived"))["id"]
    deleted = (await create(gateway, account, title=f"{unique} deleted"))["id"]
    live = (await create(gateway, account, title=f"{unique} live"))["id"]
    async with gateway.client() as client:
        await client.patch(
            f"/api/conversations/{archived}", json={"archived": True}, headers=account.headers
        )
        await client.delete(f"/api/conversations/{deleted}", headers=account.headers)
    assert await search(gateway, account, unique) == [live]
    assert await search(gateway, account, unique, archived="true") == [archived]


async def test_search_pages(gateway: Gateway) -> None:
    account = await gateway.account()
    unique = word()
    ids = [(await create(gateway, account, title=f"{unique} {i}"))["id"] for i in range(5)]
    await create(gateway, account, title="noise")
    rows, cursor = await listing(gateway, account, q=unique, limit=3)
    assert cursor is not None
    more, end = await listing(gateway, account, q=unique, limit=3, before=cursor)
    assert end is None
    assert [row["id"] for row in rows + more] == list(reversed(ids))


# --- rename, archive, delete -------------------------------------------------------------


async def test_rename_updates_title_and_updated_at(gateway: Gateway) -> None:
    account = await gateway.account()
    created = await create(gateway, account, title="Before")
    later = await create(gateway, account, title="Later")
    async with gateway.client() as client:
        response = await client.patch(
            f"/api/conversations/{created['id']}", json={"title": "After"},
            headers=account.headers,
        )
        assert response.status_code == 200, response.text
        updated = response.json()
        detail = (await client.get(
            f"/api/conversations/{created['id']}", headers=account.headers
        )).json()
    assert updated["title"] == "After" == detail["title"]
    assert datetime.fromisoformat(updated["updated_at"]) > datetime.fromisoformat(
        created["updated_at"]
    )
    assert datetime.fromisoformat(detail["updated_at"]) == datetime.fromisoformat(
        updated["updated_at"]
    )
    assert detail["created_at"] == created["created_at"]
    rows, _ = await listing(gateway, account)
    assert [row["id"] for row in rows] == [created["id"], later["id"]]


async def test_patch_model_and_system_prompt(gateway: Gateway) -> None:
    account = await gateway.account()
    created = await create(gateway, account, system_prompt="Old prompt")
    url = f"/api/conversations/{created['id']}"
    async with gateway.client() as client:
        response = await client.patch(
            url, json={"model": "fake-model", "system_prompt": "New prompt"},
            headers=account.headers,
        )
        assert response.json()["system_prompt"] == "New prompt"
        assert response.json()["model"] == "fake-model"
        response = await client.patch(url, json={"system_prompt": None}, headers=account.headers)
        assert response.json()["system_prompt"] is None
        assert response.json()["title"] == "New chat"


@pytest.mark.parametrize(
    "body",
    [
        {"title": None},
        {"archived": None},
        {"title": ""},
        {"title": "x" * 201},
        {"archived": "maybe"},
    ],
)
async def test_bad_patches_are_400(gateway: Gateway, body: dict[str, Any]) -> None:
    account = await gateway.account()
    created = await create(gateway, account, title="Keep me")
    async with gateway.client() as client:
        response = await client.patch(
            f"/api/conversations/{created['id']}", json=body, headers=account.headers
        )
        assert_error(response, 400)
        detail = await client.get(f"/api/conversations/{created['id']}", headers=account.headers)
    assert detail.json()["title"] == "Keep me" and detail.json()["archived"] is False


async def test_archive_hides_from_the_default_list(gateway: Gateway) -> None:
    account = await gateway.account()
    kept = (await create(gateway, account))["id"]
    archived = (await create(gateway, account))["id"]
    url = f"/api/conversations/{archived}"
    async with gateway.client() as client:
        response = await client.patch(url, json={"archived": True}, headers=account.headers)
        assert response.status_code == 200 and response.json()["archived"] is True
        rows, _ = await listing(gateway, account)
        assert [row["id"] for row in rows] == [kept]
        rows, _ = await listing(gateway, account, archived="true")
        assert [row["id"] for row in rows] == [archived]
        # Still readable by id, and can be restored.
        assert (await client.get(url, headers=account.headers)).json()["archived"] is True
        await client.patch(url, json={"archived": False}, headers=account.headers)
    rows, _ = await listing(gateway, account)
    assert {row["id"] for row in rows} == {kept, archived}


async def test_delete_removes_the_conversation_and_its_messages(gateway: Gateway) -> None:
    account = await gateway.account()
    conversation_id = await chat(gateway, account, "Delete me please")
    assert await message_count(gateway, conversation_id) == 2
    url = f"/api/conversations/{conversation_id}"
    async with gateway.client() as client:
        response = await client.delete(url, headers=account.headers)
        assert response.status_code == 204 and response.content == b""
        assert_error(await client.get(url, headers=account.headers), 404)
        assert_error(await client.delete(url, headers=account.headers), 404)
        assert_error(await client.get(f"{url}/export", headers=account.headers), 404)
    assert await message_count(gateway, conversation_id) == 0
    async with gateway.state.sessionmaker() as db:
        assert await db.get(Conversation, conversation_id) is None
    rows, _ = await listing(gateway, account)
    assert conversation_id not in [row["id"] for row in rows]


# --- export and import -------------------------------------------------------------------


async def test_export_json(gateway: Gateway) -> None:
    account = await gateway.account()
    conversation_id = await chat(gateway, account, "What is the capital of France?")
    async with gateway.client() as client:
        response = await client.get(
            f"/api/conversations/{conversation_id}/export", headers=account.headers
        )
        default = await client.get(
            f"/api/conversations/{conversation_id}/export?format=json", headers=account.headers
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "attachment" in response.headers["content-disposition"]
    assert ".json" in response.headers["content-disposition"]
    body = response.json()
    assert default.json()["messages"] == body["messages"]
    assert body["id"] == conversation_id
    assert body["title"] == "What is the capital of France?"
    assert [(m["role"], m["content"]) for m in body["messages"]] == [
        ("user", "What is the capital of France?"),
        ("assistant", ANSWER),
    ]


async def test_export_markdown(gateway: Gateway) -> None:
    account = await gateway.account()
    conversation_id = await chat(gateway, account, "What is the capital of France?")
    await rename(gateway, account, conversation_id, "Capitals of Europe")
    async with gateway.client() as client:
        response = await client.get(
            f"/api/conversations/{conversation_id}/export?format=markdown",
            headers=account.headers,
        )
        bad = await client.get(
            f"/api/conversations/{conversation_id}/export?format=pdf", headers=account.headers
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    assert ".md" in response.headers["content-disposition"]
    text = response.text
    assert text.startswith("# Capitals of Europe\n")
    assert "**User**" in text and "**Assistant**" in text
    assert text.index("What is the capital of France?") < text.index(ANSWER)
    assert_error(bad, 400)


async def test_import_creates_a_searchable_conversation(gateway: Gateway) -> None:
    account = await gateway.account()
    unique = word()
    payload = {
        "title": f"Imported {unique}",
        "system_prompt": "You are terse.",
        "messages": [
            {"role": "user", "content": f"Question about {unique}zebras"},
            {"role": "assistant", "content": "Zebras have stripes.", "model": "old-model"},
            {"role": "user", "content": "Why?"},
            {"role": "assistant", "content": "Camouflage.", "status": "interrupted"},
        ],
    }
    async with gateway.client() as client:
        response = await client.post(
            "/api/conversations/import", json=payload, headers=account.headers
        )
        assert response.status_code == 201, response.text
        created = response.json()
        detail = (await client.get(
            f"/api/conversations/{created['id']}", headers=account.headers
        )).json()
    assert created["title"] == payload["title"]
    assert detail["system_prompt"] == "You are terse."
    messages = detail["messages"]
    assert [(m["role"], m["content"], m["status"]) for m in messages] == [
        (m["role"], m["content"], m.get("status", "complete")) for m in payload["messages"]
    ]
    assert messages[1]["model"] == "old-model"
    assert [m["parent_id"] for m in messages] == [None] + [m["id"] for m in messages[:-1]]
    assert await search(gateway, account, f"{unique}zeb") == [created["id"]]  # content
    assert await search(gateway, account, f"imported {unique}") == [created["id"]]  # title
    assert await search(gateway, account, "camouflage stripes") == []  # no single row has both
    rows, _ = await listing(gateway, account)
    assert rows[0]["id"] == created["id"]


async def test_export_then_import_round_trips(gateway: Gateway) -> None:
    account = await gateway.account()
    other = await gateway.account()
    conversation_id = await chat(gateway, account, "Round trip?")
    async with gateway.client() as client:
        exported = (await client.get(
            f"/api/conversations/{conversation_id}/export", headers=account.headers
        )).json()
        # Another user imports the file: they get their own copy.
        response = await client.post(
            "/api/conversations/import", json=exported, headers=other.headers
        )
        assert response.status_code == 201, response.text
        copy_id = response.json()["id"]
        assert copy_id != conversation_id
        copy = (await client.get(
            f"/api/conversations/{copy_id}", headers=other.headers
        )).json()
        assert_error(await client.get(f"/api/conversations/{copy_id}", headers=account.headers),
                     404)
    assert copy["title"] == exported["title"]
    assert [(m["role"], m["content"]) for m in copy["messages"]] == [
        (m["role"], m["content"]) for m in exported["messages"]
    ]


@pytest.mark.parametrize(
    "payload",
    [
        {"title": "x"},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"messages": [{"role": "user"}]},
        {"messages": [{"role": "user", "content": "x", "status": "pending"}]},
        {"title": "x" * 201, "messages": []},
    ],
)
async def test_bad_imports_are_400(gateway: Gateway, payload: dict[str, Any]) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        response = await client.post(
            "/api/conversations/import", content=json.dumps(payload),
            headers={**account.headers, "Content-Type": "application/json"},
        )
    assert_error(response, 400)
    rows, _ = await listing(gateway, account)
    assert rows == []


# --- while an answer is being generated --------------------------------------------------


async def test_delete_while_generating(gateway: Gateway) -> None:
    account = await gateway.account()
    async with gateway.client() as client:
        async with client.stream(
            "POST",
            "/api/chat",
            json={"message": "[[chunks=60 delay=0.05]] a long answer please"},
            headers=account.headers,
        ) as response:
            assert response.status_code == 200
            buffer = ""
            stream = response.aiter_text()
            while "\n\n" not in buffer:
                buffer += await anext(stream)
            first = parse_sse(buffer)[0]
            assert first.event == "conversation"
            conversation_id = first.data["conversation_id"]
            url = f"/api/conversations/{conversation_id}"
            detail = (await client.get(url, headers=account.headers)).json()
            assert detail["active_generation_id"] == first.data["generation_id"]
            assert detail["messages"][-1]["status"] == "pending"
            started = time.perf_counter()
            deleted = await client.delete(url, headers=account.headers)
            assert deleted.status_code == 204
            async for chunk in stream:
                buffer += chunk
            stopped_after = time.perf_counter() - started
    events = parse_sse(buffer)
    assert events[-1].event == "done" and events[-1].data["status"] != "complete"
    assert stopped_after < 2.0  # the generation stopped; it did not run its 3 s course
    assert await message_count(gateway, conversation_id) == 0
    async with gateway.state.sessionmaker() as db:
        assert await db.get(Conversation, conversation_id) is None
    async with gateway.client() as client:
        assert_error(await client.get(url, headers=account.headers), 404)

"""``/api/usage``, ``/api/usage/summary`` and ``/api/usage.csv`` on SQLite and PostgreSQL:
isolation, admin filters, keyset pagination, date ranges, exact aggregates, a streamed
formula-safe CSV, and the rows real chat and /v1 traffic leaves behind."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from chatgate.db.models import ApiKey, RequestLog
from chatgate.db.session import make_sessionmaker
from chatgate.usage import queries
from chatgate.usage.queries import UsageFilter
from tests.helpers import Account, Gateway

DAY = datetime(2024, 5, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- helpers


def usage_row(user_id: int | None, created_at: datetime, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "request_id": f"u-{uuid.uuid4().hex}",
        "user_id": user_id,
        "route": "v1.chat",
        "status": "ok",
        "status_code": 200,
        "model": "fake-model",
        "engine": "fake-model@127.0.0.1:1",
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "ttft_ms": 10.0,
        "latency_ms": 40.0,
        "finish_reason": "stop",
        "created_at": created_at,
    }
    values.update(overrides)
    return values


async def insert_rows(gateway: Gateway, rows: list[dict[str, Any]]) -> None:
    async with gateway.state.sessionmaker() as db:
        await db.execute(insert(RequestLog), rows)
        await db.commit()


async def key_id_of(gateway: Gateway, account: Account) -> int:
    async with gateway.state.sessionmaker() as db:
        key_id = await db.scalar(select(ApiKey.id).where(ApiKey.user_id == account.user_id))
    assert key_id is not None
    return int(key_id)


def model_name() -> str:
    """A model name unique to one test: the module's database is shared between tests."""
    return f"m-{uuid.uuid4().hex[:10]}"


@pytest_asyncio.fixture
async def http(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway.client() as client:
        yield client


async def get_rows(
    http: httpx.AsyncClient, account: Account, **params: Any
) -> list[dict[str, Any]]:
    response = await http.get("/api/usage", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["rows"]
    return rows


async def all_pages(
    http: httpx.AsyncClient, account: Account, **params: Any
) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    pages, cursor = 0, None
    while True:
        query = {**params, **({"before": cursor} if cursor else {})}
        response = await http.get("/api/usage", params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        rows += body["rows"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return rows, pages


async def get_csv(
    http: httpx.AsyncClient, account: Account, **params: Any
) -> tuple[httpx.Response, list[dict[str, str]]]:
    response = await http.get("/api/usage.csv", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    reader = csv.reader(io.StringIO(response.text, newline=""))
    header = next(reader)
    assert tuple(header) == queries.FIELDS
    return response, [dict(zip(header, line, strict=True)) for line in reader]


async def get_summary(
    http: httpx.AsyncClient, account: Account, **params: Any
) -> dict[str, Any]:
    response = await http.get("/api/usage/summary", params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["request_id"] for row in rows]


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


# --------------------------------------------------------------------------- isolation


async def test_users_see_only_their_own_rows(gateway: Gateway, http: httpx.AsyncClient) -> None:
    alice, bob = await gateway.account(), await gateway.account()
    model = model_name()
    a_rows = [usage_row(alice.user_id, DAY + timedelta(minutes=i), model=model) for i in range(3)]
    b_rows = [usage_row(bob.user_id, DAY + timedelta(minutes=i), model=model) for i in range(2)]
    await insert_rows(gateway, a_rows + b_rows)

    assert ids(await get_rows(http, alice)) == [r["request_id"] for r in reversed(a_rows)]
    assert ids(await get_rows(http, bob)) == [r["request_id"] for r in reversed(b_rows)]
    assert ids(await get_rows(http, bob, user_id=bob.user_id)) == ids(await get_rows(http, bob))
    assert ids(await get_rows(http, bob, username=bob.username, model=model)) == ids(
        await get_rows(http, bob)
    )
    for params in ({"user_id": alice.user_id}, {"username": alice.username}):
        response = await http.get("/api/usage", params=params, headers=bob.headers)
        assert_error(response, 403, "forbidden")
        response = await http.get("/api/usage.csv", params=params, headers=bob.headers)
        assert_error(response, 403, "forbidden")
        response = await http.get("/api/usage/summary", params=params, headers=bob.headers)
        assert_error(response, 403, "forbidden")

    summary = await get_summary(http, bob, group_by="model")
    assert [(g["key"], g["requests"]) for g in summary["groups"]] == [(model, 2)]
    assert summary["totals"]["requests"] == 2 and summary["totals"]["total_tokens"] == 24
    _, csv_rows = await get_csv(http, bob)
    assert {row["request_id"] for row in csv_rows} == {r["request_id"] for r in b_rows}

    anonymous = await http.get("/api/usage")
    assert anonymous.status_code == 401


async def test_api_key_callers_see_their_own_rows(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    alice, bob = await gateway.account(), await gateway.account()
    await insert_rows(gateway, [usage_row(alice.user_id, DAY), usage_row(bob.user_id, DAY)])
    response = await http.get("/api/usage", headers=alice.key_headers)
    assert response.status_code == 200
    assert {row["user_id"] for row in response.json()["rows"]} == {alice.user_id}


async def test_admin_sees_everyone_and_filters(gateway: Gateway, http: httpx.AsyncClient) -> None:
    admin, alice, bob = (
        await gateway.account("admin"),
        await gateway.account(),
        await gateway.account(),
    )
    model, alice_key = model_name(), await key_id_of(gateway, alice)
    rows = [
        usage_row(alice.user_id, DAY, model=model, api_key_id=alice_key),
        usage_row(alice.user_id, DAY + timedelta(seconds=1), model=model, route="chat"),
        usage_row(bob.user_id, DAY + timedelta(seconds=2), model=model, status="error",
                  status_code=502, error="engine failed"),
        usage_row(None, DAY + timedelta(seconds=3), model=model, status="rejected",
                  status_code=429),
    ]
    await insert_rows(gateway, rows)

    everything = await get_rows(http, admin, model=model)
    assert ids(everything) == [r["request_id"] for r in reversed(rows)]
    by_id = {row["request_id"]: row for row in everything}
    first = by_id[rows[0]["request_id"]]
    assert first["username"] == alice.username and first["api_key_name"] == "test key"
    assert first["api_key_id"] == alice_key and first["total_tokens"] == 12
    assert by_id[rows[3]["request_id"]]["username"] is None

    def only(*indexes: int) -> set[str]:
        return {rows[i]["request_id"] for i in indexes}

    async def matching(**params: Any) -> set[str]:
        return set(ids(await get_rows(http, admin, model=model, **params)))

    assert await matching(user_id=alice.user_id) == only(0, 1)
    assert await matching(username=bob.username) == only(2)
    assert await matching(username="nobody-at-all") == set()
    assert await matching(api_key_id=alice_key) == only(0)
    assert await matching(status="error") == only(2)
    assert await matching(status="rejected") == only(3)
    assert await matching(route="chat") == only(1)
    assert await matching(user_id=alice.user_id, route="v1.chat") == only(0)
    bad = await http.get("/api/usage", params={"status": "weird"}, headers=admin.headers)
    assert bad.status_code == 400

    summary = await get_summary(http, admin, model=model, group_by="user")
    per_user = {g["key"]: (g["label"], g["requests"]) for g in summary["groups"]}
    assert per_user == {
        alice.user_id: (alice.username, 2),
        bob.user_id: (bob.username, 1),
        None: (None, 1),
    }
    by_key = await get_summary(http, admin, model=model, group_by="key")
    assert {g["key"]: (g["label"], g["requests"]) for g in by_key["groups"]} == {
        alice_key: ("test key", 1),
        None: (None, 3),
    }
    _, csv_rows = await get_csv(http, admin, model=model, username=alice.username)
    assert {row["request_id"] for row in csv_rows} == only(0, 1)


# --------------------------------------------------------------------------- pagination


async def test_pagination_returns_every_row_exactly_once(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    account = await gateway.account()
    # Ties on created_at (several rows per instant) must not lose or repeat rows.
    rows = [usage_row(account.user_id, DAY + timedelta(seconds=i // 4)) for i in range(25)]
    await insert_rows(gateway, rows)
    seen, pages = await all_pages(http, account, limit=7)
    assert pages == 4
    assert sorted(ids(seen)) == sorted(r["request_id"] for r in rows)
    assert len(set(ids(seen))) == 25
    order = [(row["created_at"], row["id"]) for row in seen]
    assert order == sorted(order, reverse=True), "newest first"
    one_page, _ = await all_pages(http, account, limit=25)
    assert ids(one_page) == ids(seen)

    for params, code in (
        ({"before": "not-a-cursor!"}, "invalid_cursor"),
        ({"limit": 501}, "invalid_request"),
        ({"limit": 0}, "invalid_request"),
    ):
        response = await http.get("/api/usage", params=params, headers=account.headers)
        assert_error(response, 400, code)


async def test_date_range_is_half_open_and_utc(gateway: Gateway, http: httpx.AsyncClient) -> None:
    account = await gateway.account()
    stamps = [
        datetime(2024, 3, 1, 0, 0, 0, tzinfo=UTC),
        datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 3, 2, 0, 0, 0, tzinfo=UTC),
    ]
    rows = [usage_row(account.user_id, stamp) for stamp in stamps]
    await insert_rows(gateway, rows)

    async def window(**params: str) -> list[int]:
        found = set(ids(await get_rows(http, account, **params)))
        return [i for i, row in enumerate(rows) if row["request_id"] in found]

    assert await window(since="2024-03-01", until="2024-03-02") == [0, 1]
    assert await window(since="2024-03-01T00:00:00Z", until="2024-03-02T00:00:00Z") == [0, 1]
    assert await window(since="2024-03-01T23:59:59.999999") == [1, 2]
    assert await window(since="2024-03-02T00:00:00.000001") == []
    assert await window(until="2024-03-01T00:00:00.000001") == [0]
    # Another zone: 02:00 at +02:00 is midnight UTC.
    assert await window(since="2024-03-02T02:00:00+02:00") == [2]
    assert await window(until="2024-03-01T02:00:00+02:00") == []
    response = await http.get(
        "/api/usage", params={"since": "2024-03-02", "until": "2024-03-01"},
        headers=account.headers,
    )
    assert_error(response, 400, "invalid_range")
    response = await http.get("/api/usage", params={"since": "yesterday"}, headers=account.headers)
    assert response.status_code == 400
    summary = await get_summary(http, account, since="2024-03-01", until="2024-03-02")
    assert summary["totals"]["requests"] == 2


# --------------------------------------------------------------------------- aggregates


async def test_summary_numbers_per_day_across_utc_midnight(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    account = await gateway.account()
    key_id = await key_id_of(gateway, account)
    midnight = datetime(2024, 6, 2, tzinfo=UTC)
    m1, m2 = model_name(), model_name()
    rows = [
        usage_row(account.user_id, midnight - timedelta(microseconds=1), model=m1,
                  prompt_tokens=10, completion_tokens=20, latency_ms=100.0, ttft_ms=10.0),
        usage_row(account.user_id, midnight - timedelta(hours=3), model=m2,
                  prompt_tokens=1, completion_tokens=2, latency_ms=300.0, ttft_ms=None,
                  status="error", status_code=502, api_key_id=key_id),
        usage_row(account.user_id, midnight, model=m1, prompt_tokens=3, completion_tokens=4,
                  latency_ms=50.0, ttft_ms=5.0, status="cancelled", status_code=499),
        usage_row(account.user_id, midnight + timedelta(hours=23), model=m1, prompt_tokens=7,
                  completion_tokens=0, latency_ms=10.0, ttft_ms=None, status="rejected",
                  status_code=429, api_key_id=key_id),
        usage_row(account.user_id, midnight + timedelta(hours=5), model=m1,
                  prompt_tokens=100, completion_tokens=200, latency_ms=90.0, ttft_ms=15.0),
    ]
    await insert_rows(gateway, rows)

    days = await get_summary(http, account, group_by="day")
    assert days["group_by"] == "day"
    assert [g["key"] for g in days["groups"]] == ["2024-06-01", "2024-06-02"]
    first, second = days["groups"]
    assert (first["requests"], first["ok"], first["error"], first["other"]) == (2, 1, 1, 0)
    assert (first["prompt_tokens"], first["completion_tokens"], first["total_tokens"]) == (
        11, 22, 33
    )
    assert first["avg_latency_ms"] == pytest.approx(200.0)
    assert first["max_latency_ms"] == pytest.approx(300.0)
    assert first["avg_ttft_ms"] == pytest.approx(10.0), "rows without a TTFT are left out"
    assert (second["requests"], second["ok"], second["error"], second["other"]) == (3, 1, 0, 2)
    assert second["total_tokens"] == 7 + 7 + 300
    assert second["avg_latency_ms"] == pytest.approx(50.0)
    assert second["avg_ttft_ms"] == pytest.approx(10.0)
    totals = days["totals"]
    assert (totals["requests"], totals["ok"], totals["error"], totals["other"]) == (5, 2, 1, 2)
    assert totals["total_tokens"] == 33 + 314
    assert totals["avg_latency_ms"] == pytest.approx(110.0)
    assert totals["max_latency_ms"] == pytest.approx(300.0)
    assert totals["avg_ttft_ms"] == pytest.approx(10.0)

    models = await get_summary(http, account, group_by="model")
    assert [(g["key"], g["label"], g["requests"], g["total_tokens"]) for g in models["groups"]] == [
        (m1, m1, 4, 30 + 7 + 7 + 300),
        (m2, m2, 1, 3),
    ]
    keys = await get_summary(http, account, group_by="key")
    assert {g["key"]: (g["label"], g["requests"]) for g in keys["groups"]} == {
        key_id: ("test key", 2),
        None: (None, 3),
    }
    users = await get_summary(http, account, group_by="user", since="2024-06-02")
    assert [(g["key"], g["label"], g["requests"]) for g in users["groups"]] == [
        (account.user_id, account.username, 3)
    ]
    filtered = await get_summary(http, account, group_by="day", status="ok", model=m1)
    assert [(g["key"], g["requests"]) for g in filtered["groups"]] == [
        ("2024-06-01", 1), ("2024-06-02", 1)
    ]
    empty = await get_summary(http, account, since="2030-01-01")
    assert empty["groups"] == [] and empty["totals"]["requests"] == 0
    assert empty["totals"]["avg_latency_ms"] is None
    bad = await http.get("/api/usage/summary", params={"group_by": "hour"},
                         headers=account.headers)
    assert bad.status_code == 400


async def test_days_are_utc_whatever_the_session_time_zone(database_url: str) -> None:
    """PostgreSQL would bucket ``created_at`` by the session's zone; days must stay UTC."""
    connect_args: dict[str, Any] = {}
    if database_url.startswith("postgresql"):
        connect_args = {"server_settings": {"timezone": "Pacific/Kiritimati"}}  # UTC+14
    engine = create_async_engine(database_url, connect_args=connect_args)
    try:
        sessionmaker = make_sessionmaker(engine)
        late = datetime(2024, 7, 1, 23, 0, tzinfo=UTC)
        async with sessionmaker() as db:
            await db.execute(
                insert(RequestLog),
                [usage_row(None, late), usage_row(None, late + timedelta(hours=2))],
            )
            await db.commit()
            groups = await queries.summarize(db, UsageFilter(), "day")
            in_range = await queries.summarize(
                db, UsageFilter(since=datetime(2024, 7, 2), until=datetime(2024, 7, 3)), "day"
            )
        assert [(g.key, g.requests) for g in groups] == [("2024-07-01", 1), ("2024-07-02", 1)]
        assert [(g.key, g.requests) for g in in_range] == [("2024-07-02", 1)]
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------- CSV


async def test_csv_parses_back_to_the_rows_and_neutralises_formulas(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    account = await gateway.account()
    rows = [
        usage_row(account.user_id, DAY, model="=HYPERLINK(\"http://x\")", error="+1+1"),
        usage_row(account.user_id, DAY + timedelta(seconds=1), model="@SUM(A1)",
                  error="-2, \"quoted\"\nsecond line", finish_reason="\tcmd"),
        usage_row(account.user_id, DAY + timedelta(seconds=2), model="plain", error=None,
                  ttft_ms=None),
    ]
    await insert_rows(gateway, rows)
    response, parsed = await get_csv(http, account)
    assert response.headers["content-type"].startswith("text/csv")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="chatgate-usage-{stamp}.csv"'
    )
    api_rows = await get_rows(http, account)
    assert [row["request_id"] for row in parsed] == ids(api_rows)
    for line, api in zip(parsed, api_rows, strict=True):
        assert datetime.fromisoformat(line["created_at"]) == datetime.fromisoformat(
            api["created_at"].replace("Z", "+00:00")
        )
        for field in ("id", "user_id", "status_code", "prompt_tokens", "total_tokens"):
            assert line[field] == str(api[field])
        assert line["username"] == account.username
    newest, middle, oldest = parsed
    assert oldest["model"] == "'=HYPERLINK(\"http://x\")" and oldest["error"] == "'+1+1"
    assert middle["model"] == "'@SUM(A1)"
    assert middle["error"] == "'-2, \"quoted\"\nsecond line"
    assert middle["finish_reason"] == "'\tcmd"
    assert newest["model"] == "plain" and newest["error"] == "" and newest["ttft_ms"] == ""
    assert float(newest["latency_ms"]) == 40.0


async def test_csv_streams_a_large_table_completely(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    account = await gateway.account()
    start = datetime(2023, 1, 1, tzinfo=UTC)
    rows = [usage_row(account.user_id, start + timedelta(seconds=i // 2)) for i in range(3000)]
    await insert_rows(gateway, rows)

    # Read in batches of EXPORT_BATCH: never the whole table at once.
    flt = UsageFilter(user_id=account.user_id)
    sizes = [len(b) async for b in queries.iter_rows(gateway.state.sessionmaker, flt)]
    assert sizes == [queries.EXPORT_BATCH] * (3000 // queries.EXPORT_BATCH)

    pieces = 0
    body = bytearray()
    async with http.stream("GET", "/api/usage.csv", headers=account.headers) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers  # streamed (chunked)
        async for piece in response.aiter_bytes():
            pieces += 1
            body += piece
    assert pieces > 1
    lines = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert tuple(lines[0]) == queries.FIELDS
    exported = [line[queries.FIELDS.index("request_id")] for line in lines[1:]]
    assert len(exported) == 3000 and set(exported) == {r["request_id"] for r in rows}


# --------------------------------------------------------------------------- real traffic


def chat_body(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": content}], **extra}


def rid() -> str:
    return f"acc-{uuid.uuid4().hex}"


async def _v1_disconnect(http: httpx.AsyncClient, account: Account, request_id: str) -> None:
    headers = {**account.key_headers, "X-Request-ID": request_id}
    body = chat_body("go [[chunks=200 delay=0.02]]", stream=True)
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200
        seen = 0
        async for line in r.aiter_lines():
            seen += line.startswith("data: {")
            if seen >= 3:
                break


async def _web_chat_stopped(http: httpx.AsyncClient, account: Account, request_id: str) -> None:
    headers = {**account.headers, "X-Request-ID": request_id}
    body = {"message": "stop me [[chunks=300 delay=0.02]]"}
    async with http.stream("POST", "/api/chat", json=body, headers=headers) as r:
        generation_id = r.headers["x-generation-id"]
        seen = 0
        async for line in r.aiter_lines():
            seen += line.startswith("data: {")
            if seen >= 3:
                stop = await http.post(f"/api/chat/{generation_id}/stop", headers=account.headers)
                assert stop.json()["stopped"] is True
                break


async def _traffic(gateway: Gateway, http: httpx.AsyncClient, account: Account) -> dict[str, str]:
    """Real requests; returns request id → expected usage status."""
    expected: dict[str, str] = {}

    async def web(message: str, status: str) -> None:
        request_id = rid()
        headers = {**account.headers, "X-Request-ID": request_id}
        response = await http.post("/api/chat", json={"message": message}, headers=headers)
        assert response.status_code == 200
        expected[request_id] = status

    async def v1(content: str, status: str, code: int, **extra: Any) -> None:
        request_id = rid()
        headers = {**account.key_headers, "X-Request-ID": request_id}
        response = await http.post(
            "/v1/chat/completions", json=chat_body(content, **extra), headers=headers
        )
        assert response.status_code == code, response.text
        expected[request_id] = status

    await web("hello", "ok")
    await web("boom [[status=500]]", "error")
    await v1("hi", "ok", 200)
    await v1("hi", "ok", 200, stream=True)
    await v1("hi [[status=500]]", "error", 502)
    disconnected, stopped = rid(), rid()
    await _v1_disconnect(http, account, disconnected)
    expected[disconnected] = "cancelled"
    await _web_chat_stopped(http, account, stopped)
    expected[stopped] = "interrupted"
    return expected


async def _wait_for_rows(gateway: Gateway, user_id: int, count: int) -> None:
    deadline = time.monotonic() + 5
    while True:
        async with gateway.state.sessionmaker() as db:
            stored = await db.scalar(
                select(func.count()).select_from(RequestLog).where(RequestLog.user_id == user_id)
            )
        if stored == count or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.05)


async def test_real_traffic_leaves_exactly_one_row_per_request(
    gateway: Gateway, http: httpx.AsyncClient
) -> None:
    account, admin = await gateway.account(), await gateway.account("admin")
    expected = await _traffic(gateway, http, account)
    assert len(expected) == 7
    await _wait_for_rows(gateway, account.user_id, len(expected))
    await asyncio.sleep(0.2)  # nothing more arrives late

    rows, _ = await all_pages(http, account, limit=3)
    assert {row["request_id"]: row["status"] for row in rows} == expected
    assert len(rows) == len(expected)
    key_rows = [row for row in rows if row["route"].startswith("v1")]
    assert len(key_rows) == 4 and all(row["api_key_name"] == "test key" for row in key_rows)
    assert all(row["model"] == "fake-model" for row in rows)
    ok = [row for row in rows if row["status"] == "ok"]
    assert all(row["completion_tokens"] > 0 and row["prompt_tokens"] > 0 for row in ok)

    _, csv_rows = await get_csv(http, account)
    assert {row["request_id"]: row["status"] for row in csv_rows} == expected
    _, admin_csv = await get_csv(http, admin, user_id=account.user_id)
    assert sorted(ids(admin_csv)) == sorted(expected)

    summary = await get_summary(http, account, group_by="model")
    [group] = summary["groups"]
    assert group["requests"] == 7 and (group["ok"], group["error"], group["other"]) == (3, 2, 2)
    statuses = Counter(expected.values())
    assert statuses == {"ok": 3, "error": 2, "cancelled": 1, "interrupted": 1}


"""UsageWriter on a real database (SQLite and PostgreSQL): durability before return,
group commit, flush on close, retries, and rows the database refuses."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import delete, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from chatgate.db.models import RequestLog, User
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.usage import service as usage_service
from chatgate.usage.record import UsageRecord
from chatgate.usage.service import UsageWriter
from tests.conftest import _migrated_url


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(usage_service, "RETRY_DELAYS", (0.01, 0.02, 0.03))


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgres"])
async def migrated_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """One migrated database per backend for this module (creating one per test is
    most of the cost); each test starts from an empty usage table."""
    async for url in _migrated_url(request.param, tmp_path_factory.mktemp(request.param)):
        yield url


@pytest_asyncio.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    db = make_engine(migrated_url)
    async with db.begin() as conn:
        await conn.execute(delete(RequestLog))
        await conn.execute(delete(User))
    yield db
    await db.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return make_sessionmaker(engine)


class CommitCounter:
    """Counts committed transactions on an engine (connection-level COMMIT events)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.count = 0
        event.listen(engine.sync_engine, "commit", self._on_commit)

    def _on_commit(self, _conn: Any) -> None:
        self.count += 1


def row(**overrides: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": f"u-{uuid.uuid4().hex}",
        "route": "v1.chat",
        "status": "ok",
        "status_code": 200,
        "model": "fake-model",
        "engine": "fake-model@127.0.0.1:1",
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "ttft_ms": 12.5,
        "latency_ms": 40.0,
        "finish_reason": "stop",
    }
    values.update(overrides)
    return UsageRecord(**values)


async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> list[RequestLog]:
    async with sessionmaker() as db:
        return list((await db.scalars(select(RequestLog).order_by(RequestLog.id))).all())


async def count(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as db:
        return int(await db.scalar(select(func.count()).select_from(RequestLog)) or 0)


@pytest_asyncio.fixture
async def writer(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[UsageWriter]:
    w = UsageWriter(sessionmaker)
    w.start()
    yield w
    await w.close()


async def test_record_returns_only_after_commit(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    committed = asyncio.Event()
    release = asyncio.Event()

    def on_commit(_conn: Any) -> None:
        committed.set()

    event.listen(engine.sync_engine, "commit", on_commit)

    class SlowSessions:
        """Holds each transaction open until the test releases it."""

        def __call__(self) -> Any:
            return _Slow(sessionmaker())

    class _Slow:
        def __init__(self, session: AsyncSession) -> None:
            self.session = session

        async def __aenter__(self) -> Any:
            await self.session.__aenter__()
            return self

        async def __aexit__(self, *exc: Any) -> None:
            await self.session.__aexit__(*exc)

        async def execute(self, *args: Any, **kwargs: Any) -> Any:
            return await self.session.execute(*args, **kwargs)

        def get_bind(self) -> Any:
            return self.session.get_bind()

        async def commit(self) -> None:
            await release.wait()
            await self.session.commit()

    writer = UsageWriter(SlowSessions())  # type: ignore[arg-type]
    writer.start()
    try:
        item = row()
        task = asyncio.create_task(writer.record(item))
        await asyncio.sleep(0.05)
        assert not task.done()  # the row is not durable yet, so record() has not returned
        assert not committed.is_set()
        release.set()
        await asyncio.wait_for(task, 5)
        assert committed.is_set()
        # Visible to any other connection the moment record() returns.
        rows = await stored(sessionmaker)
        assert [r.request_id for r in rows] == [item.request_id]
    finally:
        release.set()
        await writer.close()


async def test_recorded_row_has_every_field(
    writer: UsageWriter, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as db:
        user = User(username=f"u-{uuid.uuid4().hex[:8]}", password_hash="x", role="user")
        db.add(user)
        await db.commit()
    item = row(user_id=user.id, status="error", status_code=502, error="boom", ttft_ms=None)
    await writer.record(item)
    (got,) = await stored(sessionmaker)
    assert got.request_id == item.request_id
    assert (got.user_id, got.api_key_id, got.route) == (user.id, None, "v1.chat")
    assert (got.status, got.status_code, got.error) == ("error", 502, "boom")
    assert (got.prompt_tokens, got.completion_tokens) == (5, 7)
    assert got.ttft_ms is None and got.latency_ms == 40.0
    assert got.finish_reason == "stop" and got.engine == "fake-model@127.0.0.1:1"
    assert got.created_at is not None


async def test_concurrent_records_share_transactions(
    engine: AsyncEngine, writer: UsageWriter, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    counter = CommitCounter(engine)
    items = [row() for _ in range(60)]
    await asyncio.gather(*(writer.record(item) for item in items))
    assert await count(sessionmaker) == 60
    assert 1 <= counter.count < 60 / 2, f"{counter.count} commits for 60 rows"
    ids = {r.request_id for r in await stored(sessionmaker)}
    assert ids == {item.request_id for item in items}


async def test_record_nowait_rows_are_flushed_by_close(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    writer = UsageWriter(sessionmaker)
    writer.start()
    items = [row(status="cancelled", status_code=499) for _ in range(25)]
    for item in items:
        writer.record_nowait(item)
    await writer.close()
    rows = await stored(sessionmaker)
    assert {r.request_id for r in rows} == {item.request_id for item in items}
    assert {r.status for r in rows} == {"cancelled"}
    await writer.close()  # idempotent


async def test_close_without_start_is_a_no_op(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await UsageWriter(sessionmaker).close()


class FlakySessions:
    """A sessionmaker whose first ``failures`` sessions fail on execute."""

    def __init__(self, real: async_sessionmaker[AsyncSession], failures: int) -> None:
        self.real = real
        self.failures = failures
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.failures > 0:
            self.failures -= 1
            return _Broken()
        return self.real()


class _Broken:
    async def __aenter__(self) -> _Broken:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def get_bind(self) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is down"))

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("database is down"))

    async def commit(self) -> None:
        raise AssertionError("not reached")


async def test_commit_failure_is_retried(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    flaky = FlakySessions(sessionmaker, failures=1)
    writer = UsageWriter(flaky)  # type: ignore[arg-type]
    writer.start()
    try:
        item = row()
        await asyncio.wait_for(writer.record(item), 5)
    finally:
        await writer.close()
    assert flaky.calls == 2
    assert [r.request_id for r in await stored(sessionmaker)] == [item.request_id]


async def test_lasting_failure_is_reported_and_the_writer_keeps_going(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    attempts = len(usage_service.RETRY_DELAYS) + 1
    flaky = FlakySessions(sessionmaker, failures=attempts)
    writer = UsageWriter(flaky)  # type: ignore[arg-type]
    writer.start()
    try:
        with pytest.raises(OperationalError):
            await asyncio.wait_for(writer.record(row()), 5)
        assert flaky.calls == attempts
        later = row()
        await asyncio.wait_for(writer.record(later), 5)  # the database is back
    finally:
        await writer.close()
    assert [r.request_id for r in await stored(sessionmaker)] == [later.request_id]


async def test_a_resent_request_id_is_stored_beside_the_first(
    writer: UsageWriter, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Clients may resend their X-Request-ID: both rows are kept, with the batch around them."""
    first = row()
    await writer.record(first)
    again = row(request_id=first.request_id, completion_tokens=99)
    others = [row() for _ in range(10)]
    await asyncio.wait_for(
        asyncio.gather(*(writer.record(item) for item in [*others[:5], again, *others[5:]])), 10
    )
    rows = await stored(sessionmaker)
    assert len(rows) == 12
    assert {item.request_id for item in others} <= {r.request_id for r in rows}
    duplicates = [r for r in rows if r.request_id == first.request_id]
    assert sorted(r.completion_tokens for r in duplicates) == [7, 99]


async def test_a_row_for_a_deleted_user_is_kept_without_the_user(
    writer: UsageWriter, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    item = row(user_id=987654321)
    ok = row()
    await asyncio.wait_for(asyncio.gather(writer.record(item), writer.record(ok)), 10)
    rows = {r.request_id: r for r in await stored(sessionmaker)}
    assert set(rows) == {item.request_id, ok.request_id}
    assert rows[item.request_id].user_id is None


async def test_a_nul_in_client_text_does_not_lose_the_row(
    writer: UsageWriter, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    # A refused request quotes the client's model name; PostgreSQL text cannot hold NUL.
    item = row(status="rejected", status_code=404, model="a\x00b", error="no model 'a\x00b'")
    await asyncio.wait_for(writer.record(item), 30)
    async with sessionmaker() as db:
        query = select(RequestLog).where(RequestLog.request_id == item.request_id)
        stored = (await db.execute(query)).scalar_one()
    assert (stored.model, stored.error) == ("ab", "no model 'ab'")

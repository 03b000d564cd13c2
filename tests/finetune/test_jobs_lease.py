"""Job rows and their lease on both databases: renewals by the owner only, the sweep that
ends jobs whose gateway stopped renewing, and cancel requests."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chatgate.db.models import FinetuneJob, utcnow
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.errors import APIError
from chatgate.finetune import jobs
from chatgate.finetune.progress import Progress

LEASE = 60.0


def row(job_id: str, status: str = "running", age: float = 0.0, owner: str = "gw-a") -> FinetuneJob:
    return FinetuneJob(
        id=job_id,
        status=status,
        base="smollm2-135m",
        dataset="/d.jsonl",
        params={},
        owner=owner,
        heartbeat_at=utcnow() - timedelta(seconds=age),
        cancel_requested=False,
        step=0,
        curve=[],
    )


async def test_sweep_ends_only_running_jobs_whose_lease_lapsed(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            db.add_all(
                [
                    row("stale", age=LEASE + 30),
                    row("fresh", age=5),
                    row("done", status="succeeded", age=LEASE * 10),
                ]
            )
            await db.commit()
            assert await jobs.sweep_lapsed(db, LEASE) == 1
            assert await jobs.sweep_lapsed(db, LEASE) == 0  # idempotent
            statuses = {j.id: (j.status, j.error) for j in await jobs.recent(db)}
    finally:
        await engine.dispose()
    assert statuses["stale"] == ("interrupted", jobs.LEASE_LAPSED)
    assert statuses["fresh"] == ("running", None)
    assert statuses["done"] == ("succeeded", None)


async def test_renew_saves_progress_for_the_owner_only(database_url: str) -> None:
    engine = make_engine(database_url)
    progress = Progress()
    progress.apply({"message": "training_started", "total_steps": 4, "mlflow_run_id": "r1"})
    progress.apply({"message": "training_step", "step": 2, "loss": 0.5, "epoch": 1})
    try:
        async with make_sessionmaker(engine)() as db:
            db.add(row("job", age=LEASE - 1))
            await db.commit()
            assert await jobs.renew(db, "job", "gw-b", progress) is None  # not its job
            assert await jobs.renew(db, "job", "gw-a", progress) is False
            await jobs.request_cancel(db, "job")
            assert await jobs.renew(db, "job", "gw-a", progress) is True
            assert await jobs.sweep_lapsed(db, LEASE) == 0  # the renewal moved the lease
            saved = await jobs.get(db, "job")
            await db.refresh(saved)
            assert (saved.step, saved.total_steps, saved.loss) == (2, 4, 0.5)
            assert saved.curve == [[2, 0.5]] and saved.mlflow_run_id == "r1"
            await jobs.finish(db, "job", "cancelled", progress, None)
            assert await jobs.renew(db, "job", "gw-a", progress) is None  # ended
            with pytest.raises(APIError) as not_running:
                await jobs.request_cancel(db, "job")
            assert not_running.value.status_code == 409
    finally:
        await engine.dispose()

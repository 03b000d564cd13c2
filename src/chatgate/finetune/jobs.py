"""Job rows (``finetune_jobs``): created by the gateway that runs the trainer, updated by
its supervisor, ended by it or, when its lease ran out, by any gateway's sweep."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.db.models import FinetuneJob, utcnow
from chatgate.errors import APIError
from chatgate.finetune.progress import Progress

LIST_LIMIT = 100
LEASE_LAPSED = "the gateway running this job stopped renewing its lease"


async def get(db: AsyncSession, job_id: str) -> FinetuneJob:
    job = await db.get(FinetuneJob, job_id)
    if job is None:
        raise APIError(404, f"fine-tuning job {job_id!r} not found", "job_not_found")
    return job


async def recent(db: AsyncSession, limit: int = LIST_LIMIT) -> list[FinetuneJob]:
    rows = await db.scalars(
        select(FinetuneJob).order_by(FinetuneJob.created_at.desc()).limit(limit)
    )
    return list(rows)


def progress_values(progress: Progress) -> dict[str, Any]:
    values: dict[str, Any] = {
        "step": progress.step,
        "total_steps": progress.total_steps,
        "epoch": progress.epoch,
        "loss": progress.loss,
        "learning_rate": progress.learning_rate,
        "tokens_per_second": progress.tokens_per_second,
        "curve": list(progress.curve),
    }
    if progress.started is not None:
        values["dataset_sha256"] = progress.started.get("dataset_sha256")
        values["mlflow_run_id"] = progress.started.get("mlflow_run_id")
    return values


async def renew(db: AsyncSession, job_id: str, owner: str, progress: Progress) -> bool | None:
    """Save progress and renew the lease. Returns whether a cancel was requested, or None
    when the row is no longer this gateway's running job (a sweep ended it)."""
    result = await db.execute(
        update(FinetuneJob)
        .where(
            FinetuneJob.id == job_id,
            FinetuneJob.owner == owner,
            FinetuneJob.status == "running",
        )
        .values(heartbeat_at=utcnow(), **progress_values(progress))
    )
    if _rowcount(result) == 0:
        await db.commit()
        return None
    cancel = await db.scalar(select(FinetuneJob.cancel_requested).where(FinetuneJob.id == job_id))
    await db.commit()
    return bool(cancel)


async def finish(
    db: AsyncSession, job_id: str, status: str, progress: Progress, error: str | None
) -> None:
    values = progress_values(progress)
    done = progress.finished or {}
    for key in ("mlflow_run_id", "model_name", "model_version", "gguf_lora"):
        if done.get(key) is not None:
            values[key] = str(done[key])
    await db.execute(
        update(FinetuneJob)
        .where(FinetuneJob.id == job_id, FinetuneJob.status == "running")
        .values(status=status, error=error, finished_at=utcnow(), **values)
    )
    await db.commit()


async def request_cancel(db: AsyncSession, job_id: str) -> FinetuneJob:
    job = await get(db, job_id)
    if job.status != "running":
        raise APIError(409, f"job {job_id!r} is {job.status}, not running", "job_not_running")
    job.cancel_requested = True
    await db.commit()
    return job


async def sweep_lapsed(db: AsyncSession, lease_seconds: float, now: datetime | None = None) -> int:
    """End running jobs whose owner stopped renewing: their gateway is gone."""
    now = now or utcnow()
    result = await db.execute(
        update(FinetuneJob)
        .where(
            FinetuneJob.status == "running",
            FinetuneJob.heartbeat_at < now - timedelta(seconds=lease_seconds),
        )
        .values(status="interrupted", error=LEASE_LAPSED, finished_at=now)
    )
    await db.commit()
    return _rowcount(result)


def _rowcount(result: Any) -> int:
    """Rows an UPDATE matched (``Result`` is a ``CursorResult`` for DML)."""
    count: int = result.rowcount
    return count

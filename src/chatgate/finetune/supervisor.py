"""Runs one fine-tuning job at a time as a background process and follows it.

The trainer (``tools/train/finetune.py`` under ``.venv-train``) runs in its own process
group; its JSON log lines are read every half second for the job's progress (row,
Prometheus gauges). The row is saved when the step changed (at most every 2 s) and at
least every quarter lease, which renews the lease: a gateway that dies stops renewing,
and any gateway's sweep ends the job as ``interrupted``. Cancel = SIGTERM to the process
group (SIGKILL 10 s later); a cancel made through another gateway reaches the owner as
``cancel_requested`` on its next save. A gateway that stops ends its job the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from chatgate.db.models import FinetuneJob, utcnow
from chatgate.errors import APIError
from chatgate.finetune import command, jobs, versions
from chatgate.finetune.command import JobParams
from chatgate.finetune.progress import LogFollower, Progress
from chatgate.observability.metrics import Metrics
from chatgate.settings import Settings

log = logging.getLogger("chatgate.finetune")

POLL_SECONDS = 0.5
SAVE_SECONDS = 2.0
KILL_AFTER_SECONDS = 10.0
OUTPUT_TAIL_BYTES = 2000
GATEWAY_STOPPED = "the gateway stopped during the job"
SUPERVISOR_FAILED = "the gateway's supervisor failed (see its log); the trainer was stopped"

StopReason = Literal["cancelled", "interrupted"]


def log_path(settings: Settings, job_id: str) -> Path:
    return settings.log_dir / "training" / f"{job_id}.jsonl"


def output_path(settings: Settings, job_id: str) -> Path:
    return settings.log_dir / "training" / f"{job_id}.out"


def new_job_id() -> str:
    """The seed's log name (``…_finetune_YYYYMMDD_HHMMSS``) plus a few random characters."""
    return f"finetune_{datetime.now(UTC):%Y%m%d_%H%M%S}_{uuid.uuid4().hex[:6]}"


@dataclass
class RunningJob:
    id: str
    base: str
    process: asyncio.subprocess.Process
    follower: LogFollower
    output: Path
    progress: Progress = field(default_factory=Progress)
    stop_reason: StopReason | None = None
    stop_error: str | None = None
    term_sent_at: float | None = None


class FinetuneSupervisor:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        owner_prefix: str = "gateway",
    ) -> None:
        self.settings = settings
        self._sessionmaker = sessionmaker
        self._metrics = metrics
        # Who runs the job: a gateway, or `chatgate finetune start` in the foreground.
        host = socket.gethostname()
        self.owner = f"{owner_prefix}:{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._heartbeat = settings.finetune_lease_seconds / 4
        self._lock = asyncio.Lock()
        self.current: RunningJob | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="finetune-sweeper")

    async def submit(self, params: JobParams, user_id: int | None) -> FinetuneJob:
        """Start a job here (409 while this gateway runs one)."""
        async with self._lock:
            if self.current is not None:
                raise APIError(
                    409, f"job {self.current.id} is running on this gateway", "finetune_busy"
                )
            command.check_trainer(self.settings)
            job_id = new_job_id()
            async with self._sessionmaker() as db:
                row = FinetuneJob(
                    id=job_id,
                    status="running",
                    base=params.base,
                    dataset=str(params.dataset),
                    params=params.as_dict(),
                    owner=self.owner,
                    heartbeat_at=utcnow(),
                    cancel_requested=False,
                    step=0,
                    curve=[],
                    created_by=user_id,
                )
                db.add(row)
                await db.commit()
            running = await self._spawn(job_id, params)
            self.current = running
            self._metrics.training_jobs_running.set(1)
            self._monitor = asyncio.create_task(self._follow(running), name=f"finetune-{job_id}")
            log.info("fine-tuning job %s started (pid %s)", job_id, running.process.pid)
            async with self._sessionmaker() as db:
                row = await jobs.get(db, job_id)
                row.pid = running.process.pid
                await db.commit()
                await db.refresh(row)
            return row

    async def _spawn(self, job_id: str, params: JobParams) -> RunningJob:
        out = output_path(self.settings, job_id)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with out.open("ab") as handle:
                process = await asyncio.create_subprocess_exec(
                    *command.argv(self.settings, job_id, params),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=handle,
                    stderr=asyncio.subprocess.STDOUT,
                    env=command.environment(self.settings),
                    start_new_session=True,  # its own process group: cancel stops it all
                )
        except OSError as exc:
            async with self._sessionmaker() as db:
                await jobs.finish(db, job_id, "failed", Progress(), f"could not start: {exc}")
            message = f"the trainer did not start: {exc}"
            raise APIError(503, message, "training_unavailable") from exc
        follower = LogFollower(log_path(self.settings, job_id))
        return RunningJob(job_id, params.base, process, follower, out)

    async def cancel(self, job_id: str) -> FinetuneJob:
        """Cancel a running job, here or (through its row) on the gateway running it."""
        async with self._sessionmaker() as db:
            row = await jobs.request_cancel(db, job_id)
        current = self.current
        if current is not None and current.id == job_id:
            self._terminate(current, "cancelled")
        return row

    def cancel_current(self) -> None:
        """Cancel this process's own job (the CLI's Ctrl-C)."""
        if self.current is not None:
            self._terminate(self.current, "cancelled")

    async def wait(self) -> None:
        """Until the current job (if any) has ended and its row is saved."""
        if self._monitor is not None:
            await asyncio.shield(self._monitor)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        current, monitor = self.current, self._monitor
        if current is not None and monitor is not None:
            self._terminate(current, "interrupted", GATEWAY_STOPPED)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(monitor), KILL_AFTER_SECONDS + 5)

    def _terminate(self, job: RunningJob, reason: StopReason, error: str | None = None) -> None:
        if job.stop_reason is None:
            job.stop_reason, job.stop_error = reason, error
        if job.term_sent_at is None and job.process.returncode is None:
            job.term_sent_at = time.monotonic()
            _signal_group(job.process.pid, signal.SIGTERM)

    async def _follow(self, job: RunningJob) -> None:
        """Follow the job until its process exits, then save how it ended (always: a bug
        here must not leave the gateway "busy" with a trainer nobody watches)."""
        try:
            await self._watch(job)
        except Exception:
            log.exception("following fine-tuning job %s failed; stopping it", job.id)
            if job.stop_reason is None:
                job.stop_reason, job.stop_error = "interrupted", SUPERVISOR_FAILED
            _signal_group(job.process.pid, signal.SIGKILL)
            await job.process.wait()
        await self._end(job)
        versions.invalidate()  # a finished job registered a version: list it at once

    async def _watch(self, job: RunningJob) -> None:
        last_save, saved_step = time.monotonic(), -1
        while True:
            exited = await _wait_exit(job.process, POLL_SECONDS)
            self._read(job)
            if exited:
                break
            now = time.monotonic()
            due = job.progress.step != saved_step and now - last_save >= SAVE_SECONDS
            if due or now - last_save >= self._heartbeat:
                last_save, saved_step = now, job.progress.step
                verdict = await self._renew(job)
                if verdict is None:
                    self._terminate(job, "interrupted", jobs.LEASE_LAPSED)
                elif verdict:
                    self._terminate(job, "cancelled")
            if job.term_sent_at is not None and now - job.term_sent_at > KILL_AFTER_SECONDS:
                _signal_group(job.process.pid, signal.SIGKILL)

    def _read(self, job: RunningJob) -> None:
        progress = job.progress
        for line in job.follower.read():
            progress.apply(line)
        steps = progress.take_new_steps()
        if not steps:
            return
        m, base = self._metrics, job.base
        m.training_steps.labels(base).inc(steps)
        m.training_step.labels(base).set(progress.step)
        for gauge, value in (
            (m.training_total_steps, progress.total_steps),
            (m.training_epoch, progress.epoch),
            (m.training_loss, progress.loss),
            (m.training_learning_rate, progress.learning_rate),
            (m.training_tokens_per_second, progress.tokens_per_second),
            (m.training_rss, progress.rss_bytes),
        ):
            if value is not None:
                gauge.labels(base).set(value)

    async def _renew(self, job: RunningJob) -> bool | None:
        try:
            async with self._sessionmaker() as db:
                return await jobs.renew(db, job.id, self.owner, job.progress)
        except Exception as exc:  # the database away: the job runs on, the lease may lapse
            log.warning("saving fine-tuning progress of %s failed: %s", job.id, exc)
            return False

    async def _end(self, job: RunningJob) -> None:
        status, error = outcome(job)
        try:
            async with self._sessionmaker() as db:
                await jobs.finish(db, job.id, status, job.progress, error)
        except Exception:
            log.exception("saving the end of fine-tuning job %s failed", job.id)
        self._metrics.training_jobs.labels(status).inc()
        self._metrics.training_jobs_running.set(0)
        self.current = None
        log.info("fine-tuning job %s ended: %s", job.id, status)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                async with self._sessionmaker() as db:
                    ended = await jobs.sweep_lapsed(db, self.settings.finetune_lease_seconds)
            except Exception as exc:
                log.warning("sweeping fine-tuning jobs failed: %s", exc)
                continue
            if ended:
                log.warning("ended %d fine-tuning job(s) whose gateway stopped", ended)


def outcome(job: RunningJob) -> tuple[str, str | None]:
    """The job's final status and error from how its process ended."""
    progress, code = job.progress, job.process.returncode
    if job.stop_reason is not None:
        return job.stop_reason, job.stop_error
    if code == 0 and progress.finished is not None:
        return "succeeded", None
    if progress.cancelled:
        return "cancelled", None
    return "failed", progress.error or _tail(job.output) or f"the trainer exited with {code}"


def _tail(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - OUTPUT_TAIL_BYTES))
            text = handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


async def _wait_exit(process: asyncio.subprocess.Process, seconds: float) -> bool:
    try:
        await asyncio.wait_for(process.wait(), seconds)
    except TimeoutError:
        return False
    return True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)

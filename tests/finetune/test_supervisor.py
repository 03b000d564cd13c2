"""Fine-tuning jobs through the admin API on a real gateway, with a fake trainer
(tests/finetune/fake_trainer.py) for the deterministic edge cases: progress from its JSON
lines, the loss curve, Prometheus metrics, cancel (here and through the row, as another
gateway does), a trainer that ignores SIGTERM, failures, a lost lease, shutdown."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import update

from chatgate.db.models import FinetuneJob
from chatgate.db.session import make_engine, make_sessionmaker
from chatgate.finetune.supervisor import GATEWAY_STOPPED, KILL_AFTER_SECONDS
from tests.conftest import _migrated_url, gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import Account, Gateway, start_gateway

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")
JOBS = "/api/admin/finetune/jobs"
WAIT_SECONDS = 60.0


def trainer_settings(tmp: Path, url: str, upstream: FakeUpstream) -> Any:
    return gateway_settings(
        tmp,
        url,
        upstream,
        train_python=sys.executable,
        train_script=FAKE_TRAINER,
        finetune_lease_seconds=20.0,
    )


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgres"])
async def gateway(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    upstream: FakeUpstream,
) -> AsyncIterator[Gateway]:
    tmp = tmp_path_factory.mktemp(f"ft-{request.param}")
    (tmp / "chats.jsonl").write_text('{"messages": []}\n')
    async for url in _migrated_url(request.param, tmp):
        async with start_gateway(trainer_settings(tmp, url, upstream), upstream) as gw:
            yield gw


@pytest_asyncio.fixture(scope="module")
async def admin(gateway: Gateway, fast_passwords: None) -> Account:
    return await gateway.account("admin")


def body(gateway: Gateway, **extra: Any) -> dict[str, Any]:
    return {"dataset": str(gateway.settings.data_dir / "chats.jsonl"), "max_steps": 3, **extra}


async def start(gateway: Gateway, admin: Account, mode: str, mp: pytest.MonkeyPatch) -> str:
    mp.setenv("FAKE_TRAINER_MODE", mode)
    async with gateway.client() as client:
        response = await client.post(JOBS, json=body(gateway), headers=admin.headers)
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "running" and job["owner"].startswith("gateway:")
    return str(job["id"])


async def wait_for(
    gateway: Gateway, admin: Account, job_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    async with gateway.client() as client:
        while True:
            job: dict[str, Any] = (
                await client.get(f"{JOBS}/{job_id}", headers=admin.headers)
            ).json()
            if done(job):
                return job
            assert time.monotonic() < deadline, f"job never got there: {job}"
            await asyncio.sleep(0.1)


def ended(job: dict[str, Any]) -> bool:
    return job["status"] != "running"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def pid_of(gateway: Gateway, job_id: str) -> int:
    async with gateway.state.sessionmaker() as db:
        row = await db.get(FinetuneJob, job_id)
        assert row is not None and row.pid is not None
        return row.pid


async def test_job_runs_to_the_end_with_curve_and_metrics(
    gateway: Gateway, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await start(gateway, admin, "ok", monkeypatch)
    job = await wait_for(gateway, admin, job_id, ended)
    assert job["status"] == "succeeded", job
    assert (job["step"], job["total_steps"], job["epoch"], job["loss"]) == (3, 3, 1, 1.5)
    assert job["curve"] == [
        {"step": 1, "loss": 2.5},
        {"step": 2, "loss": 2.0},
        {"step": 3, "loss": 1.5},
    ]
    assert (job["model_name"], job["model_version"]) == ("smollm2-135m-fake", "7")
    assert job["mlflow_run_id"] == "run-1" and job["dataset_sha256"] == "ab" * 32
    assert job["gguf_lora"] == "/tmp/fake/adapter.gguf" and job["error"] is None
    assert Path(job["log_file"]).is_file()
    async with gateway.client() as client:
        listed = (await client.get(JOBS, headers=admin.headers)).json()["jobs"]
        text = (await client.get("/metrics")).text
    assert job_id in [j["id"] for j in listed] and "curve" not in listed[0]
    assert 'chatgate_training_jobs_total{status="succeeded"}' in text
    assert 'chatgate_training_loss{model="smollm2-135m"} 1.5' in text
    assert 'chatgate_training_steps_total{model="smollm2-135m"}' in text
    assert "chatgate_training_jobs_running 0.0" in text


async def test_cancel_stops_the_trainer_and_one_job_at_a_time(
    gateway: Gateway, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await start(gateway, admin, "hold", monkeypatch)
    await wait_for(gateway, admin, job_id, lambda j: j["step"] == 2)
    pid = await pid_of(gateway, job_id)
    async with gateway.client() as client:
        busy = await client.post(JOBS, json=body(gateway), headers=admin.headers)
        assert busy.status_code == 409 and busy.json()["error"]["code"] == "finetune_busy"
        cancel = await client.post(f"{JOBS}/{job_id}/cancel", headers=admin.headers)
    assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
    job = await wait_for(gateway, admin, job_id, ended)
    assert (job["status"], job["error"]) == ("cancelled", None)
    assert not alive(pid)
    async with gateway.client() as client:
        again = await client.post(f"{JOBS}/{job_id}/cancel", headers=admin.headers)
    assert again.status_code == 409 and again.json()["error"]["code"] == "job_not_running"


async def test_cancel_through_the_row_reaches_the_owner(
    gateway: Gateway, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another gateway cancels by setting ``cancel_requested``: the owner stops it."""
    job_id = await start(gateway, admin, "hold", monkeypatch)
    await wait_for(gateway, admin, job_id, lambda j: j["step"] == 2)
    pid = await pid_of(gateway, job_id)
    async with gateway.state.sessionmaker() as db:
        await db.execute(
            update(FinetuneJob).where(FinetuneJob.id == job_id).values(cancel_requested=True)
        )
        await db.commit()
    job = await wait_for(gateway, admin, job_id, ended)
    assert job["status"] == "cancelled" and not alive(pid)


async def test_a_trainer_ignoring_sigterm_is_killed(
    gateway: Gateway, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await start(gateway, admin, "stubborn", monkeypatch)
    await wait_for(gateway, admin, job_id, lambda j: j["step"] == 2)
    pid = await pid_of(gateway, job_id)
    async with gateway.client() as client:
        await client.post(f"{JOBS}/{job_id}/cancel", headers=admin.headers)
    started = time.monotonic()
    job = await wait_for(gateway, admin, job_id, ended)
    assert job["status"] == "cancelled" and not alive(pid)
    assert time.monotonic() - started >= KILL_AFTER_SECONDS - 1  # SIGTERM alone did nothing


@pytest.mark.parametrize(
    ("mode", "error"), [("fail", "ValueError: fake failure"), ("crash", "fake crash")]
)
async def test_failures_keep_the_trainers_error(
    gateway: Gateway, admin: Account, monkeypatch: pytest.MonkeyPatch, mode: str, error: str
) -> None:
    job_id = await start(gateway, admin, mode, monkeypatch)
    job = await wait_for(gateway, admin, job_id, ended)
    assert job["status"] == "failed" and error in job["error"]


async def test_a_lost_lease_stops_the_trainer(
    gateway: Gateway, admin: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep (another gateway, after a long database outage) ended the job: the owner,
    on its next renewal, finds the row no longer its running job and stops the trainer."""
    job_id = await start(gateway, admin, "hold", monkeypatch)
    await wait_for(gateway, admin, job_id, lambda j: j["step"] == 2)
    pid = await pid_of(gateway, job_id)
    async with gateway.state.sessionmaker() as db:
        await db.execute(
            update(FinetuneJob)
            .where(FinetuneJob.id == job_id)
            .values(status="interrupted", error="swept")
        )
        await db.commit()
    deadline = time.monotonic() + WAIT_SECONDS
    while alive(pid) or gateway.app.state.finetune.current is not None:
        assert time.monotonic() < deadline, "the trainer outlived its lease"
        await asyncio.sleep(0.1)
    job = await wait_for(gateway, admin, job_id, ended)
    assert (job["status"], job["error"]) == ("interrupted", "swept")  # the sweep's word stays


async def test_request_errors(gateway: Gateway, admin: Account) -> None:
    user = await gateway.account()
    async with gateway.client() as client:
        missing = await client.get(f"{JOBS}/nope", headers=admin.headers)
        assert missing.status_code == 404
        cancel = await client.post(f"{JOBS}/nope/cancel", headers=admin.headers)
        assert cancel.status_code == 404
        no_data = await client.post(JOBS, json={"dataset": "absent"}, headers=admin.headers)
        assert no_data.status_code == 400 and no_data.json()["error"]["param"] == "dataset"
        bad_base = await client.post(JOBS, json=body(gateway, base="x"), headers=admin.headers)
        assert bad_base.status_code == 400 and bad_base.json()["error"]["param"] == "base"
        for wrong in ({"epochs": 0}, {"rank": "4"}, {"lr": 0}, {"max_steps": 1.5}):
            bad = await client.post(JOBS, json=body(gateway, **wrong), headers=admin.headers)
            assert bad.status_code == 400, wrong
        forbidden = await client.get(JOBS, headers=user.headers)
        assert forbidden.status_code == 403


async def test_stopping_the_gateway_interrupts_its_job(
    tmp_path: Path, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch, fast_passwords: None
) -> None:
    (tmp_path / "chats.jsonl").write_text('{"messages": []}\n')
    async for url in _migrated_url("sqlite", tmp_path):
        async with start_gateway(trainer_settings(tmp_path, url, upstream), upstream) as gw:
            admin = await gw.account("admin")
            job_id = await start(gw, admin, "hold", monkeypatch)
            await wait_for(gw, admin, job_id, lambda j: j["step"] == 2)
            pid = await pid_of(gw, job_id)
        assert not alive(pid)
        engine_url = url
    engine = make_engine(engine_url)
    try:
        async with make_sessionmaker(engine)() as db:
            row = await db.get(FinetuneJob, job_id)
            assert row is not None
            assert (row.status, row.error) == ("interrupted", GATEWAY_STOPPED)
    finally:
        await engine.dispose()

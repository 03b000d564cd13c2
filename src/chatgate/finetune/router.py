"""``/api/admin/finetune/jobs``: start, list, follow and cancel LoRA jobs (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from chatgate.api_route import GatewayRoute
from chatgate.db.models import FinetuneJob
from chatgate.deps import AdminUser, DbDep, StateDep
from chatgate.finetune import command, jobs
from chatgate.finetune.schemas import CurvePoint, JobDetail, JobIn, JobList, JobOut
from chatgate.finetune.supervisor import FinetuneSupervisor, log_path
from chatgate.openapi_responses import ADMIN, errors
from chatgate.settings import Settings

router = APIRouter(tags=["admin: fine-tuning"], responses=ADMIN, route_class=GatewayRoute)


def supervisor(request: Request) -> FinetuneSupervisor:
    found: FinetuneSupervisor = request.app.state.finetune
    return found


def detail(settings: Settings, row: FinetuneJob) -> JobDetail:
    curve = [CurvePoint(step=int(step), loss=loss) for step, loss in row.curve or []]
    base = JobOut.model_validate(row).model_dump()
    return JobDetail(**base, curve=curve, log_file=str(log_path(settings, row.id)))


@router.post("/api/admin/finetune/jobs", status_code=202, responses=errors(400, 409, 413))
async def start_job(body: JobIn, admin: AdminUser, state: StateDep, request: Request) -> JobDetail:
    """Start a job on this gateway (409 while it runs one; 503 without ``make train-env``)."""
    settings = state.settings
    command.check_base(body.base)
    params = command.JobParams(
        dataset=command.resolve_dataset(settings, body.dataset),
        base=body.base,
        epochs=body.epochs,
        lr=body.lr,
        rank=body.rank,
        max_steps=body.max_steps,
        batch_size=body.batch_size,
        name=body.name,
    )
    row = await supervisor(request).submit(params, admin.user_id)
    return detail(settings, row)


@router.get("/api/admin/finetune/jobs")
async def list_jobs(_admin: AdminUser, db: DbDep) -> JobList:
    """The newest jobs first (100 at most), without their loss curves."""
    return JobList(jobs=[JobOut.model_validate(row) for row in await jobs.recent(db)])


@router.get("/api/admin/finetune/jobs/{job_id}", responses=errors(404))
async def get_job(job_id: str, _admin: AdminUser, db: DbDep, state: StateDep) -> JobDetail:
    return detail(state.settings, await jobs.get(db, job_id))


@router.post(
    "/api/admin/finetune/jobs/{job_id}/cancel", status_code=202, responses=errors(404, 409)
)
async def cancel_job(
    job_id: str, _admin: AdminUser, state: StateDep, request: Request
) -> JobDetail:
    """Stop a running job (SIGTERM to its process group, on whichever gateway runs it)."""
    row = await supervisor(request).cancel(job_id)
    return detail(state.settings, row)

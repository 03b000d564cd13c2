"""``/api/admin/models/deploy|rollback|deployments|splits``: fine-tuned versions served as
models and A/B splits of the web chat (admins only). Any gateway of a fleet may be asked:
the change is written to the database and every gateway converges on it
(finetune/deployments.py, reconcile.py); the answer comes once *this* gateway serves it."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.api_route import GatewayRoute
from chatgate.db.models import utcnow
from chatgate.deps import AdminUser, DbDep, StateDep
from chatgate.feedback.rates import rates_of
from chatgate.feedback.rates import summarize as rates_summary
from chatgate.feedback.schemas import ModelRates
from chatgate.finetune import deploy, versions
from chatgate.finetune.deploy import Deployment
from chatgate.finetune.deployments import Deployer
from chatgate.finetune.desired import Desired
from chatgate.finetune.split import Split
from chatgate.finetune.versions import VersionEvaluation
from chatgate.openapi_responses import ADMIN, errors
from chatgate.settings import Settings

router = APIRouter(tags=["admin: fine-tuning"], responses=ADMIN, route_class=GatewayRoute)


class DeployIn(BaseModel):
    model: str = Field(
        description="BASE:NAME@VERSION or BASE:NAME@ALIAS (e.g. smollm2-135m:zanthia@champion)",
        max_length=300,
    )


class RollbackIn(BaseModel):
    name: str = Field(description="BASE:NAME (e.g. smollm2-135m:zanthia)", max_length=300)
    to_base: bool = Field(
        default=False,
        description="Undeploy every version of NAME (and its split): the base model answers"
        " alone. Without it, the alias champion moves back to the previous version",
    )


class DeploymentOut(BaseModel):
    model_id: str
    base: str
    name: str
    version: int
    gguf: str | None = Field(default=None, description="This host's copy of the GGUF LoRA")
    adapter_dir: str | None = None
    served: bool = Field(default=True, description="Whether this gateway serves it now")
    error: str | None = Field(default=None, description="Why its last deploy failed")
    deployed_at: datetime | None = None

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentOut:
        return cls(
            model_id=deployment.model_id,
            base=deployment.base,
            name=deployment.name,
            version=deployment.version,
            gguf=deployment.gguf,
            adapter_dir=deployment.adapter_dir,
        )

    @classmethod
    def listed(cls, row: Desired, local: Deployment | None, served: bool) -> DeploymentOut:
        return cls(
            model_id=row.model_id,
            base=row.base,
            name=row.name,
            version=row.version,
            gguf=local.gguf if local else None,
            adapter_dir=local.adapter_dir if local else None,
            served=served,
            error=row.error,
            deployed_at=row.deployed_at,
        )


class DeploymentList(BaseModel):
    deployments: list[DeploymentOut]


class RollbackOut(BaseModel):
    model_id: str = Field(description="What answers NAME now: a version, or (to_base) its base")
    base: str
    name: str
    version: int | None = Field(description="The version deployed; null: the base alone")
    gguf: str | None = None
    adapter_dir: str | None = None
    undeployed: list[str] = Field(default_factory=list)


def deployer(request: Request) -> Deployer:
    found: Deployer = request.app.state.deployer
    return found


async def _listing(request: Request, state: StateDep) -> DeploymentList:
    chosen = deployer(request)
    local = {d.model_id: d for d in deploy.load(state.settings)}
    rows = await chosen.listed()
    return DeploymentList(
        deployments=[
            DeploymentOut.listed(r, local.get(r.model_id), chosen.serves(r.model_id)) for r in rows
        ]
    )


@router.post("/api/admin/models/deploy", responses=errors(400, 404, 409, 413, 502, 503, 504))
async def deploy_version(body: DeployIn, admin: AdminUser, request: Request) -> DeploymentOut:
    """Serve a registered version as the model id BASE:NAME@VERSION on every gateway (each
    host's engine leader downloads it, restarts a llama.cpp engine with drain or loads it at
    runtime on vLLM). Returns once this gateway serves it; 502 with the reason when it
    could not be loaded."""
    return DeploymentOut.of(await deployer(request).deploy(body.model, admin.user_id))


@router.delete(
    "/api/admin/models/deployments/{model_id}", responses=errors(404, 504)
)  # fmt: skip
async def undeploy_version(
    model_id: str, _admin: AdminUser, request: Request, state: StateDep
) -> DeploymentList:
    """Stop serving a version (and remove any split to it) on every gateway; returns the
    remaining deployments once this gateway no longer serves it."""
    await deployer(request).undeploy_one(model_id)
    return await _listing(request, state)


@router.post("/api/admin/models/rollback", responses=errors(400, 404, 409, 413, 502, 503, 504))
async def rollback_version(body: RollbackIn, admin: AdminUser, request: Request) -> RollbackOut:
    """The alias ``champion`` back to the previous version, which is deployed (409 when
    there is none: ``to_base`` then returns to the base model alone)."""
    try:
        done = await deployer(request).rollback(
            body.name, to_base=body.to_base, user_id=admin.user_id
        )
    finally:
        versions.invalidate()  # ``champion`` may have moved
    deployed = done.deployment
    return RollbackOut(
        model_id=done.model_id,
        base=done.base,
        name=done.name,
        version=done.version,
        gguf=deployed.gguf if deployed else None,
        adapter_dir=deployed.adapter_dir if deployed else None,
        undeployed=done.undeployed,
    )


@router.get("/api/admin/models/deployments")
async def list_deployments(_admin: AdminUser, request: Request, state: StateDep) -> DeploymentList:
    """The fleet's deployed versions, with whether this gateway serves each and the
    failure of its last deploy."""
    return await _listing(request, state)


class SplitIn(BaseModel):
    base: str = Field(description="The base model whose web chats are split", max_length=200)
    to: str = Field(description="The challenger: a deployed BASE:NAME@VERSION", max_length=300)
    percent: int = Field(description="Share of conversations (0: no split)", ge=0, le=100)


class SplitOut(BaseModel):
    base: str
    to: str
    percent: int
    rates: list[ModelRates] = Field(
        description="Feedback per model id (base, challenger) over the last 30 days"
    )
    evaluation: VersionEvaluation | None = Field(
        default=None,
        description="The challenger's latest gate scores beside the base's (None: never"
        " evaluated, or no training venv/registry to read them from)",
    )


class SplitList(BaseModel):
    splits: list[SplitOut]


RATES_DAYS = 30


async def _with_rates(db: AsyncSession, settings: Settings, chosen: Split) -> SplitOut:
    """The split with feedback rates and evaluation scores side by side."""
    since = utcnow() - timedelta(days=RATES_DAYS)
    rates = []
    for model in (chosen.base, chosen.to):
        found = (await rates_summary(db, since=since, model=model)).models
        rates.append(found[0] if found else rates_of(model, 0, 0, 0, 0))
    evaluation = await versions.evaluation_of(settings, chosen.to)
    return SplitOut(
        base=chosen.base, to=chosen.to, percent=chosen.percent, rates=rates, evaluation=evaluation
    )


@router.post("/api/admin/models/splits", responses=errors(400, 404, 409, 413))
async def set_split(
    body: SplitIn, _admin: AdminUser, db: DbDep, state: StateDep, request: Request
) -> SplitList:
    """Route ``percent`` % of ``base``'s web chat conversations to ``to`` (0 removes it),
    on every gateway."""
    found = await deployer(request).set_split(Split(body.base, body.to, body.percent))
    settings = state.settings
    return SplitList(splits=[await _with_rates(db, settings, s) for s in found.values()])


@router.get("/api/admin/models/splits")
async def list_splits(_admin: AdminUser, db: DbDep, state: StateDep, request: Request) -> SplitList:
    """The splits with the base's and the challenger's feedback rates and evaluation scores
    side by side."""
    found = await deployer(request).current_splits()
    settings = state.settings
    return SplitList(splits=[await _with_rates(db, settings, s) for s in found.values()])

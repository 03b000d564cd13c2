"""``/api/admin/models/deploy|rollback|deployments|splits``: fine-tuned versions served as
models and A/B splits of the web chat (admins only; finetune/rollout.py, split.py)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from chatgate.api_route import GatewayRoute
from chatgate.db.models import utcnow
from chatgate.deps import AdminUser, DbDep, StateDep
from chatgate.feedback.rates import rates_of
from chatgate.feedback.rates import summarize as rates_summary
from chatgate.feedback.schemas import ModelRates
from chatgate.finetune import deploy, split
from chatgate.finetune.deploy import Deployment
from chatgate.finetune.rollout import Rollout
from chatgate.finetune.split import Split
from chatgate.openapi_responses import ADMIN, errors

router = APIRouter(tags=["admin: fine-tuning"], responses=ADMIN, route_class=GatewayRoute)


class DeployIn(BaseModel):
    model: str = Field(
        description="BASE:NAME@VERSION or BASE:NAME@ALIAS (e.g. smollm2-135m:zanthia@champion)",
        max_length=300,
    )


class RollbackIn(BaseModel):
    name: str = Field(description="BASE:NAME (e.g. smollm2-135m:zanthia)", max_length=300)


class DeploymentOut(BaseModel):
    model_id: str
    base: str
    name: str
    version: int
    gguf: str
    adapter_dir: str | None = None

    @classmethod
    def of(cls, deployment: Deployment) -> DeploymentOut:
        return cls(**asdict(deployment))


class DeploymentList(BaseModel):
    deployments: list[DeploymentOut]


def rollout(request: Request) -> Rollout:
    found: Rollout = request.app.state.rollout
    return found


@router.post("/api/admin/models/deploy", responses=errors(400, 404, 409, 413, 502, 503))
async def deploy_version(body: DeployIn, _admin: AdminUser, request: Request) -> DeploymentOut:
    """Serve a registered version as the model id BASE:NAME@VERSION (restarts a llama.cpp
    engine with drain; loads it at runtime on vLLM). Returns once it answers."""
    return DeploymentOut.of(await rollout(request).deploy(body.model))


@router.post("/api/admin/models/rollback", responses=errors(400, 404, 409, 413, 502, 503))
async def rollback_version(body: RollbackIn, _admin: AdminUser, request: Request) -> DeploymentOut:
    """The alias ``champion`` back to the previous version, which is deployed."""
    return DeploymentOut.of(await rollout(request).rollback(body.name))


@router.get("/api/admin/models/deployments")
async def list_deployments(_admin: AdminUser, state: StateDep) -> DeploymentList:
    return DeploymentList(deployments=[DeploymentOut.of(d) for d in deploy.load(state.settings)])


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


class SplitList(BaseModel):
    splits: list[SplitOut]


RATES_DAYS = 30


async def _with_rates(db: AsyncSession, chosen: Split) -> SplitOut:
    since = utcnow() - timedelta(days=RATES_DAYS)
    rates = []
    for model in (chosen.base, chosen.to):
        found = (await rates_summary(db, since=since, model=model)).models
        rates.append(found[0] if found else rates_of(model, 0, 0, 0, 0))
    return SplitOut(base=chosen.base, to=chosen.to, percent=chosen.percent, rates=rates)


@router.post("/api/admin/models/splits", responses=errors(400, 404, 409, 413))
async def set_split(body: SplitIn, _admin: AdminUser, db: DbDep, request: Request) -> SplitList:
    """Route ``percent`` % of ``base``'s web chat conversations to ``to`` (0 removes it)."""
    table = rollout(request).splits
    table.set(split.validated(rollout(request).manager.registry, body.base, body.to, body.percent))
    return SplitList(splits=[await _with_rates(db, s) for s in table.current().values()])


@router.get("/api/admin/models/splits")
async def list_splits(_admin: AdminUser, db: DbDep, request: Request) -> SplitList:
    """The splits with the base's and the challenger's feedback rates side by side."""
    table = rollout(request).splits
    return SplitList(splits=[await _with_rates(db, s) for s in table.current().values()])

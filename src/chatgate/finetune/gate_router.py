"""``/api/admin/finetune/versions/{name}/{version}/evaluate|promote`` (admins only): the
evaluation gate of a registered LoRA version and its promotion to the alias ``champion``;
``/api/admin/models/versions``: the registered versions with their aliases and verdicts."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field, Strict
from pydantic.functional_validators import BeforeValidator

from chatgate.api_route import GatewayRoute
from chatgate.deps import AdminUser, StateDep
from chatgate.finetune import gate, versions
from chatgate.openapi_responses import ADMIN, errors
from chatgate.request_body import RequestBody, _json_integer

router = APIRouter(tags=["admin: fine-tuning"], responses=ADMIN, route_class=GatewayRoute)

Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")]
Version = Annotated[str, Path(pattern=gate.VERSION_PATTERN)]
NameFilter = Annotated[
    str | None,
    Query(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$",
        description="One fine-tune: BASE:NAME (smollm2-135m:zanthia) or its registered name",
    ),
]
Limit = Annotated[int, Field(ge=1, le=100_000), Strict(False), BeforeValidator(_json_integer)]
Tokens = Annotated[int, Field(ge=1, le=1024), Strict(False), BeforeValidator(_json_integer)]


class EvaluateIn(RequestBody):
    """Optional limits for a quick check (default: the whole held-out split and set)."""

    heldout_limit: Limit | None = None
    regression_limit: Limit | None = None
    max_new_tokens: Tokens | None = None


class PromoteIn(RequestBody):
    force: bool = False


class Verdict(BaseModel):
    """What ``tools/train/evaluate.py`` decided: ``scores[split][base|candidate]`` hold
    ``exact``, ``keyword``, ``perplexity`` and ``count``; ``leaks`` the unrelated prompts
    answered with the dataset's distinctive n-grams."""

    model_config = ConfigDict(extra="allow")

    model: str
    version: str
    gate: Literal["passed", "failed"]
    reasons: list[str]
    scores: dict[str, dict[str, dict[str, float]]]
    leaks: list[dict[str, Any]]
    tolerance: dict[str, float]
    run_id: str
    evaluation_run_id: str


class Promotion(BaseModel):
    model: str
    version: str
    gate: str
    promoted: bool
    forced: bool
    previous_champion: str | None


@router.post(
    "/api/admin/finetune/versions/{name}/{version}/evaluate",
    responses=errors(400, 404, 409, 413, 502, 503, 504),
)
async def evaluate_version(
    name: Name,
    version: Version,
    _admin: AdminUser,
    state: StateDep,
    body: EvaluateIn | None = None,
) -> Verdict:
    """Score the version against its base (held-out split, regression set, leak probe);
    the scores go to MLflow and the version's ``gate`` tag. Takes minutes on a CPU."""
    given = body or EvaluateIn()
    opts = gate.EvalOptions(given.heldout_limit, given.regression_limit, given.max_new_tokens)
    try:
        return Verdict.model_validate(await gate.evaluate(state.settings, name, version, opts))
    finally:
        versions.invalidate()  # new tags and scores, even from a run that failed late


@router.post(
    "/api/admin/finetune/versions/{name}/{version}/promote",
    responses=errors(400, 404, 409, 413, 502, 503),
)
async def promote_version(
    name: Name,
    version: Version,
    admin: AdminUser,
    state: StateDep,
    body: PromoteIn | None = None,
) -> Promotion:
    """Move ``champion`` to the version; 409 ``gate_failed`` unless its gate passed or
    ``force`` (recorded as the tag ``forced_by``). The replaced champion becomes
    ``previous_champion`` (what rollback returns to)."""
    force = body.force if body is not None else False
    try:
        done = await gate.promote(state.settings, name, version, force, admin.username)
    finally:
        versions.invalidate()  # the aliases moved
    return Promotion.model_validate(done)


@router.get("/api/admin/models/versions", responses=errors(400, 502, 503, 504))
async def list_versions(
    _admin: AdminUser, state: StateDep, name: NameFilter = None
) -> versions.VersionList:
    """The registered fine-tunes (or one) and their versions, newest first: aliases, run,
    dataset hash and the evaluation gate's latest verdict with the base's and the
    candidate's scores. Read from MLflow by ``.venv-train`` (503 ``training_unavailable``
    without it), at most 30 s old."""
    return await versions.list_versions(state.settings, name)

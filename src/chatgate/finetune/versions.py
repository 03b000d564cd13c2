"""The registered fine-tuned versions, with the evaluation gate's latest verdict and scores.

``tools/train/registry.py list`` reads them from MLflow in ``.venv-train`` (the gateway
never imports MLflow) and prints one JSON line: per version its aliases, run, dataset hash
and what evaluate.py recorded (version tags, the evaluation run's metrics). Importing
MLflow alone takes seconds, so the answer is kept ``CACHE_SECONDS`` in this process;
evaluating or promoting through the admin API drops it (``invalidate``). The split view
puts a challenger's scores beside its feedback rates with ``evaluation_of``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatgate.errors import APIError
from chatgate.finetune import command, gate
from chatgate.finetune.deploy import parse_model_id
from chatgate.settings import Settings

log = logging.getLogger("chatgate.finetune")

CACHE_SECONDS = 30.0
LIST_TIMEOUT_S = 120.0  # MLflow's import plus a tracking server's round trips
STDERR_TAIL = 2000


# --- what registry.py prints (validated: a mismatch is a 502, not a crash later) ---------


class _RawEvaluation(BaseModel):
    gate: Literal["passed", "failed"]
    reasons: list[str] = []
    evaluated_at: datetime | None = None
    evaluation_run_id: str | None = None
    metrics: dict[str, float] = {}
    tolerance: dict[str, float] = {}


class _RawVersion(BaseModel):
    version: int
    aliases: list[str] = []
    run_id: str | None = None
    created_at: datetime | None = None
    dataset_sha256: str | None = None
    dataset: str | None = None
    has_gguf: bool = False
    promoted_at: datetime | None = None
    forced_by: str | None = None
    evaluation: _RawEvaluation | None = None


class _RawModel(BaseModel):
    name: str
    base: str | None = None
    description: str | None = None
    versions: list[_RawVersion] = []


class _RawList(BaseModel):
    models: list[_RawModel]


# --- what the gateway answers -------------------------------------------------------------


class EvalScores(BaseModel):
    """One side of an evaluation (the base model, or the candidate: base + LoRA) on the
    held-out split and the general-regression set; None where that split was not scored
    (no held-out file). Keyword and exact are 0..1 (higher is better), perplexity > 1
    (lower is better)."""

    heldout_exact: float | None = None
    heldout_keyword: float | None = None
    heldout_perplexity: float | None = None
    regression_exact: float | None = None
    regression_keyword: float | None = None
    regression_perplexity: float | None = None


class VersionEvaluation(BaseModel):
    """The gate's latest verdict on a version and the scores it compared."""

    model: str = Field(description="BASE:NAME@VERSION (REGISTERED@VERSION without a base)")
    gate: Literal["passed", "failed"]
    passed: bool
    reasons: list[str]
    base: EvalScores
    candidate: EvalScores
    leaks: int | None = Field(description="Unrelated prompts answered with the dataset's facts")
    evaluated_at: datetime | None
    evaluation_run_id: str | None
    tolerance: dict[str, float]


class RegisteredVersion(BaseModel):
    version: int
    ref: str = Field(description="REGISTERED@VERSION: what evaluate and promote take")
    model_id: str | None = Field(description="BASE:NAME@VERSION: what deploy and splits take")
    aliases: list[str] = Field(description="challenger, champion, previous_champion...")
    run_id: str | None
    created_at: datetime | None
    dataset_sha256: str | None
    dataset: str | None
    deployable: bool = Field(description="It has a GGUF LoRA (llama.cpp)")
    promoted_at: datetime | None
    forced_by: str | None = Field(description="Who promoted it past a failed gate")
    evaluation: VersionEvaluation | None = Field(description="None: never evaluated")


class RegisteredModel(BaseModel):
    name: str = Field(description="The MLflow registered model, <base>-<name>")
    base: str | None
    fine_tune: str | None = Field(description="The fine-tune's own name (zanthia)")
    model: str | None = Field(description="BASE:NAME, the rollback's name")
    description: str | None
    versions: list[RegisteredVersion] = Field(description="Newest first")


class VersionList(BaseModel):
    model_config = ConfigDict(frozen=True)

    models: list[RegisteredModel]

    def only(self, name: str) -> VersionList:
        """The fine-tune ``BASE:NAME`` (or the registered name ``BASE-NAME``)."""
        registered = name.replace(":", "-", 1)
        return VersionList(models=[m for m in self.models if m.name == registered])


def _scores(metrics: dict[str, float], side: str) -> EvalScores:
    found = {
        f"{split}_{key}": metrics.get(f"{split}_{side}_{key}")
        for split in ("heldout", "regression")
        for key in ("exact", "keyword", "perplexity")
    }
    return EvalScores.model_validate(found)


def _evaluation(model_id: str, raw: _RawEvaluation) -> VersionEvaluation:
    leaks = raw.metrics.get("leak_count")
    return VersionEvaluation(
        model=model_id,
        gate=raw.gate,
        passed=raw.gate == "passed",
        reasons=raw.reasons,
        base=_scores(raw.metrics, "base"),
        candidate=_scores(raw.metrics, "candidate"),
        leaks=None if leaks is None else int(leaks),
        evaluated_at=raw.evaluated_at,
        evaluation_run_id=raw.evaluation_run_id,
        tolerance=raw.tolerance,
    )


def _version(name: str, prefix: str | None, raw: _RawVersion) -> RegisteredVersion:
    ref = f"{name}@{raw.version}"
    model_id = f"{prefix}@{raw.version}" if prefix else None
    found = raw.evaluation
    return RegisteredVersion(
        version=raw.version,
        ref=ref,
        model_id=model_id,
        aliases=raw.aliases,
        run_id=raw.run_id,
        created_at=raw.created_at,
        dataset_sha256=raw.dataset_sha256,
        dataset=raw.dataset,
        deployable=raw.has_gguf,
        promoted_at=raw.promoted_at,
        forced_by=raw.forced_by,
        evaluation=_evaluation(model_id or ref, found) if found else None,
    )


def _model(raw: _RawModel) -> RegisteredModel:
    """``<base>-<name>`` as BASE:NAME where registry.py knows the base (from the training
    run's params, or a known base that prefixes the name)."""
    fine_tune = raw.name[len(raw.base) + 1 :] if raw.base else None
    prefix = f"{raw.base}:{fine_tune}" if raw.base else None
    return RegisteredModel(
        name=raw.name,
        base=raw.base,
        fine_tune=fine_tune,
        model=prefix,
        description=raw.description,
        versions=[_version(raw.name, prefix, v) for v in raw.versions],
    )


def parse(out: str) -> VersionList:
    """registry.py's last line, typed; 502 when it is not the list."""
    lines = out.strip().splitlines()
    try:
        raw = _RawList.model_validate(json.loads(lines[-1]) if lines else {})
    except (ValueError, ValidationError) as exc:
        raise APIError(
            502, "the model registry answered no version list", "registry_error"
        ) from exc
    return VersionList(models=[_model(m) for m in raw.models])


# --- the run, and its cache ---------------------------------------------------------------


def list_argv(settings: Settings) -> list[str]:
    script = command.train_script(settings).parent / "registry.py"
    return [str(command.train_python(settings)), str(script)] + [
        "--data-dir",
        str(settings.data_dir),
        "list",
    ]


async def _fetch(settings: Settings) -> VersionList:
    command.check_trainer(settings)
    what = ("the model registry", "registry_timeout")
    code, out, err = await gate.spawn(
        list_argv(settings), command.environment(settings), LIST_TIMEOUT_S, what
    )
    if code != 0:
        log.error("registry.py list failed (exit %s): %s", code, err.strip()[-STDERR_TAIL:])
        raise APIError(502, "the model registry could not be read (see the log)", "registry_error")
    return parse(out)


@dataclass(frozen=True)
class _Entry:
    at: float
    found: VersionList | APIError  # a failure is kept too: no new run at every request


_cache: dict[tuple[str, ...], _Entry] = {}


def _key(settings: Settings) -> tuple[str, ...]:
    return (
        str(command.train_python(settings)),
        str(command.train_script(settings)),
        str(settings.data_dir),
        settings.mlflow_tracking_uri or "",
    )


def invalidate() -> None:
    """Drop what was read: an evaluation or a promotion changed tags and aliases."""
    _cache.clear()


async def list_versions(settings: Settings, name: str | None = None) -> VersionList:
    """Every registered fine-tune (or ``name``: BASE:NAME or BASE-NAME) with its versions,
    at most ``CACHE_SECONDS`` old. 503 ``training_unavailable`` without ``.venv-train``
    (never cached: installing it takes effect at once). Two requests that both miss the
    cache each run the script; the splits view asks one after the other."""
    key = _key(settings)
    entry = _cache.get(key)
    if entry is None or time.monotonic() - entry.at > CACHE_SECONDS:
        try:
            found: VersionList | APIError = await _fetch(settings)
        except APIError as exc:
            if exc.code == "training_unavailable":
                raise
            found = exc
        entry = _cache[key] = _Entry(time.monotonic(), found)
    if isinstance(entry.found, APIError):
        failed = entry.found  # a new exception per request (tracebacks would pile up)
        raise APIError(failed.status_code, failed.message, failed.code)
    return entry.found.only(name) if name else entry.found


async def evaluation_of(settings: Settings, model_id: str) -> VersionEvaluation | None:
    """The gate's latest verdict on the version served as ``model_id``
    (``BASE:NAME@VERSION``), for the split view. None when it is no version, was never
    evaluated, or the registry cannot be read: the feedback rates are shown alone then."""
    ref = parse_model_id(model_id)
    if ref is None:
        return None
    try:
        found = await list_versions(settings, f"{ref.base}:{ref.name}")
    except APIError as exc:
        log.info("no evaluation for %s: %s", model_id, exc.message)
        return None
    for model in found.models:
        for version in model.versions:
            if str(version.version) == ref.ref:
                return version.evaluation
    return None

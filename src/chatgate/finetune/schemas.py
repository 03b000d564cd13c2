"""Bodies of ``/api/admin/finetune/jobs``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict
from pydantic.functional_validators import BeforeValidator

from chatgate.finetune.command import NAME_PATTERN
from chatgate.request_body import RequestBody, _json_integer

JobStatus = Literal["running", "succeeded", "failed", "cancelled", "interrupted"]


# JSON integers with bounds (bounds before the validator, so the schema shows them).
Epochs = Annotated[int, Field(ge=1, le=100), Strict(False), BeforeValidator(_json_integer)]
Rank = Annotated[int, Field(ge=1, le=256), Strict(False), BeforeValidator(_json_integer)]
Steps = Annotated[int, Field(ge=1, le=10_000_000), Strict(False), BeforeValidator(_json_integer)]
BatchSize = Annotated[int, Field(ge=1, le=1024), Strict(False), BeforeValidator(_json_integer)]


class JobIn(RequestBody):
    """A LoRA job: ``dataset`` is a chat JSONL path on the server or a dataset export's id
    (under ``<data dir>/datasets``); ``base`` a known base (``smollm2-135m``) or a
    Hugging Face model directory. The trainer's defaults fill the rest."""

    dataset: str = Field(min_length=1, max_length=4096)
    base: str = Field(default="smollm2-135m", min_length=1, max_length=1024)
    epochs: Epochs = 2
    lr: float = Field(default=2e-4, gt=0, le=1)
    rank: Rank = 16
    max_steps: Steps | None = None
    batch_size: BatchSize = 8
    # The registered model is "<base>-<name>" (default: from the dataset's file or folder).
    name: str | None = Field(default=None, pattern=NAME_PATTERN)


class CurvePoint(BaseModel):
    step: int
    loss: float


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    status: JobStatus
    base: str
    dataset: str
    params: dict[str, Any]
    owner: str | None
    step: int
    total_steps: int | None
    epoch: int | None
    loss: float | None
    learning_rate: float | None
    tokens_per_second: float | None
    cancel_requested: bool
    dataset_sha256: str | None
    mlflow_run_id: str | None
    model_name: str | None
    model_version: str | None
    gguf_lora: str | None
    error: str | None
    created_at: datetime
    heartbeat_at: datetime | None
    finished_at: datetime | None


class JobDetail(JobOut):
    """A job with its loss curve (at most ~1000 points, thinned evenly) and log file."""

    curve: list[CurvePoint]
    log_file: str


class JobList(BaseModel):
    jobs: list[JobOut]

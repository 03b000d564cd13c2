"""MLflow for a fine-tuning job: one run (params, per-step metrics, dataset hash, the
adapter and the GGUF LoRA as artifacts) and a registered model version with the alias
``challenger``.

Embedded by default: ``sqlite:///<data dir>/mlflow/mlflow.db`` with artifacts under
``<data dir>/mlflow/artifacts`` (no server to run; ``chatgate mlflow ui`` shows it), or
the server in ``CHATGATE_MLFLOW_TRACKING_URI``. Versions are created with
``MlflowClient.create_model_version(source=<artifact URI>)``: MLflow 3's
``register_model("runs:/…")`` wants a logged model, and the adapter is plain artifacts
(the transformers flavour would store the full weights and needs torchvision).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EXPERIMENT = "chatgate-finetune"
ALIAS = "challenger"


@dataclass(frozen=True)
class Store:
    tracking_uri: str
    artifact_root: str | None  # None: the server's own default


def store(data_dir: Path) -> Store:
    uri = os.environ.get("CHATGATE_MLFLOW_TRACKING_URI")
    if uri:
        return Store(uri, None)
    root = data_dir / "mlflow"
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    return Store(f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri())


class Tracker:
    """One MLflow run; every call after ``start`` goes to it."""

    def __init__(self, where: Store) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
        import mlflow
        from mlflow.tracking import MlflowClient

        self._mlflow = mlflow
        mlflow.set_tracking_uri(where.tracking_uri)
        self.client = MlflowClient(where.tracking_uri)
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            self.experiment_id = self.client.create_experiment(
                EXPERIMENT, artifact_location=where.artifact_root
            )
        else:
            self.experiment_id = experiment.experiment_id
        self.run_id = ""

    def start(self, job: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self._mlflow.start_run(experiment_id=self.experiment_id, run_name=job, tags=tags)
        self.run_id = run.info.run_id
        self._mlflow.log_params({k: str(v) for k, v in params.items()})
        return self.run_id

    def step(self, step: int, metrics: dict[str, float]) -> None:
        self._mlflow.log_metrics(metrics, step=step)

    def artifacts(self, path: Path, under: str) -> None:
        if path.is_dir():
            self._mlflow.log_artifacts(str(path), artifact_path=under)
        else:
            self._mlflow.log_artifact(str(path), artifact_path=under)

    def register(self, name: str, description: str) -> str:
        """A new version of ``name`` from this run's adapter, aliased ``challenger``."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name, description=description)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        run = self.client.get_run(self.run_id)
        version = self.client.create_model_version(
            name,
            source=f"{run.info.artifact_uri}/adapter",
            run_id=self.run_id,
            tags={"gguf_lora": f"{run.info.artifact_uri}/gguf"},
            description=description,
        )
        self.client.set_registered_model_alias(name, ALIAS, version.version)
        return str(version.version)

    def end(self, status: str) -> None:
        """FINISHED, FAILED or KILLED (a cancelled job)."""
        self._mlflow.end_run(status=status)

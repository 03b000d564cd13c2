"""The trainer's command line: which python (``.venv-train``), which script, which dataset.

The gateway only builds an argv; everything heavy happens in the trainer's own venv.
Defaults fit a source checkout (``make train-env``); a packaged deployment names both
with ``CHATGATE_TRAIN_PYTHON`` and ``CHATGATE_TRAIN_SCRIPT``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from chatgate.errors import APIError
from chatgate.settings import Settings

SOURCE_TREE = Path(__file__).resolve().parents[3]
KNOWN_BASES = frozenset({"smollm2-135m"})  # tools/train/modelload.py KNOWN_BASES
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"  # part of an MLflow registered model's name


@dataclass(frozen=True)
class JobParams:
    """What an admin chooses for a job (the trainer's defaults for the rest)."""

    dataset: Path
    base: str
    epochs: int
    lr: float
    rank: int
    max_steps: int | None
    batch_size: int
    name: str | None = None  # the registered model is <base>-<name> (default: the dataset's)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "epochs": self.epochs,
            "lr": self.lr,
            "rank": self.rank,
            "max_steps": self.max_steps,
            "batch_size": self.batch_size,
        }


def train_python(settings: Settings) -> Path:
    return Path(settings.train_python or SOURCE_TREE / ".venv-train" / "bin" / "python")


def train_script(settings: Settings) -> Path:
    return settings.train_script or SOURCE_TREE / "tools" / "train" / "finetune.py"


def check_trainer(settings: Settings) -> None:
    """503 when the training venv is not installed: a job could not even start."""
    python, script = train_python(settings), train_script(settings)
    if not os.access(python, os.X_OK) or not script.is_file():
        raise APIError(
            503,
            f"fine-tuning is not installed here ({python}, {script}): run `make train-env` "
            "or set CHATGATE_TRAIN_PYTHON and CHATGATE_TRAIN_SCRIPT",
            "training_unavailable",
        )


def resolve_dataset(settings: Settings, spec: str) -> Path:
    """A JSONL file, a directory holding ``train.jsonl``, or an export id (a directory
    or file of that name under ``<data dir>/datasets``)."""
    candidates = [Path(spec).expanduser()]
    if "/" not in spec and spec not in {".", ".."}:
        exports = settings.data_dir / "datasets"
        candidates += [exports / spec, exports / f"{spec}.jsonl"]
    for path in candidates:
        found = path / "train.jsonl" if _exists(path, directory=True) else path
        if _exists(found):
            return found.resolve()
    raise APIError(
        400, f"dataset {spec!r}: no such JSONL file or export", "invalid_value", param="dataset"
    )


def _exists(path: Path, *, directory: bool = False) -> bool:
    """``is_file``/``is_dir`` that answer False for names no file system takes (too long,
    a NUL): a client's path is never a server error."""
    try:
        return path.is_dir() if directory else path.is_file()
    except (OSError, ValueError):
        return False


def check_base(base: str) -> None:
    if base in KNOWN_BASES or _exists(Path(base).expanduser() / "config.json"):
        return
    raise APIError(
        400,
        f"base {base!r}: not one of {sorted(KNOWN_BASES)} nor a Hugging Face model directory",
        "invalid_value",
        param="base",
    )


def argv(settings: Settings, job_id: str, params: JobParams) -> list[str]:
    args = [str(train_python(settings)), str(train_script(settings))]
    args += ["--dataset", str(params.dataset), "--base", params.base]
    args += ["--epochs", str(params.epochs), "--lr", repr(params.lr), "--rank", str(params.rank)]
    args += ["--batch-size", str(params.batch_size), "--threads", str(settings.train_threads)]
    args += ["--job", job_id, "--data-dir", str(settings.data_dir)]
    if params.max_steps is not None:
        args += ["--max-steps", str(params.max_steps)]
    if params.name is not None:
        args += ["--name", params.name]
    return args


def environment(settings: Settings) -> dict[str, str]:
    """The gateway's environment without its own settings (secrets, database URL): the
    trainer gets the data dir and the tracking URI only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATGATE_")}
    env.update({"CHATGATE_DATA_DIR": str(settings.data_dir), "PYTHONUNBUFFERED": "1"})
    if settings.mlflow_tracking_uri:
        env["CHATGATE_MLFLOW_TRACKING_URI"] = settings.mlflow_tracking_uri
    return env

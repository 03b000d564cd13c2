"""What the gateway hands the trainer: dataset and base checks, argv and environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatgate.errors import APIError
from chatgate.finetune import command
from chatgate.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        train_python="/opt/train/bin/python",
        train_script=tmp_path / "finetune.py",
        train_threads=1,
        mlflow_tracking_uri="http://user:pw@mlflow:5000",
    )


def test_dataset_file_directory_and_export_id(settings: Settings, tmp_path: Path) -> None:
    chats = tmp_path / "chats.jsonl"
    chats.write_text("{}\n")
    assert command.resolve_dataset(settings, str(chats)) == chats.resolve()
    export = tmp_path / "datasets" / "exp-1"
    export.mkdir(parents=True)
    (export / "train.jsonl").write_text("{}\n")
    assert command.resolve_dataset(settings, "exp-1") == (export / "train.jsonl").resolve()
    assert command.resolve_dataset(settings, str(export)) == (export / "train.jsonl").resolve()
    (tmp_path / "datasets" / "exp-2.jsonl").write_text("{}\n")
    assert command.resolve_dataset(settings, "exp-2").name == "exp-2.jsonl"
    with pytest.raises(APIError) as missing:
        command.resolve_dataset(settings, "nope")
    assert (missing.value.status_code, missing.value.param) == (400, "dataset")
    # Names no file system takes are the client's error, not the server's (was a 503).
    for name in ("0" * 300, "a\x00b"):
        with pytest.raises(APIError) as odd:
            command.resolve_dataset(settings, name)
        assert (odd.value.status_code, odd.value.param) == (400, "dataset")
        with pytest.raises(APIError) as base:
            command.check_base(name)
        assert (base.value.status_code, base.value.param) == (400, "base")


def test_base_is_known_or_a_model_directory(tmp_path: Path) -> None:
    command.check_base("smollm2-135m")
    (tmp_path / "config.json").write_text("{}")
    command.check_base(str(tmp_path))
    with pytest.raises(APIError) as bad:
        command.check_base("gpt-9")
    assert bad.value.param == "base"


def test_argv_and_environment(settings: Settings, tmp_path: Path) -> None:
    params = command.JobParams(tmp_path / "d.jsonl", "smollm2-135m", 3, 1e-3, 8, None, 4)
    argv = command.argv(settings, "job-1", params)
    assert argv[:2] == ["/opt/train/bin/python", str(tmp_path / "finetune.py")]
    joined = " ".join(argv)
    for part in (
        "--epochs 3",
        "--lr 0.001",
        "--rank 8",
        "--batch-size 4",
        "--threads 1",
        "--job job-1",
        f"--data-dir {tmp_path}",
    ):
        assert part in joined
    assert "--max-steps" not in argv
    with_steps = command.argv(settings, "j", command.JobParams(tmp_path, "b", 1, 1e-4, 4, 5, 8))
    assert with_steps[-2:] == ["--max-steps", "5"]
    env = command.environment(settings)
    assert env["CHATGATE_DATA_DIR"] == str(tmp_path)
    assert env["CHATGATE_MLFLOW_TRACKING_URI"] == "http://user:pw@mlflow:5000"
    assert settings.masked()["mlflow_tracking_uri"] == "http://user:****@mlflow:5000"


def test_missing_trainer_is_503(settings: Settings) -> None:
    with pytest.raises(APIError) as missing:
        command.check_trainer(settings)
    assert missing.value.status_code == 503
    assert "make train-env" in missing.value.message


def test_the_gateway_never_imports_the_training_stack() -> None:
    """torch, transformers, peft and mlflow live in .venv-train only."""
    code = (
        "import sys, chatgate.app, chatgate.cli.main, chatgate.finetune.supervisor\n"
        "heavy = {'torch', 'transformers', 'peft', 'mlflow', 'accelerate'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"

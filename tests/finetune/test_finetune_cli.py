"""``chatgate finetune start|status|cancel`` and ``chatgate mlflow ui`` (with the fake
trainer: the real one is tests/finetune/test_finetune_e2e.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from chatgate.cli.finetune import ui_argv
from chatgate.cli.main import app
from chatgate.settings import Settings

FAKE_TRAINER = Path(__file__).with_name("fake_trainer.py")


@pytest.fixture
def env(tmp_path: Path, clean_env: None) -> dict[str, str]:
    (tmp_path / "chats.jsonl").write_text('{"messages": []}\n')
    return {
        "CHATGATE_DATA_DIR": str(tmp_path / "data"),
        "CHATGATE_TRAIN_PYTHON": sys.executable,
        "CHATGATE_TRAIN_SCRIPT": str(FAKE_TRAINER),
        "FAKE_TRAINER_MODE": "ok",
    }


def chatgate(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def test_start_follows_the_job_to_its_registered_version(
    env: dict[str, str], tmp_path: Path
) -> None:
    started = chatgate(env, "finetune", "start", "--dataset", str(tmp_path / "chats.jsonl"))
    assert started.exit_code == 0, started.output
    assert "succeeded, step 3/3, loss 1.5000" in started.output
    assert "registered smollm2-135m-fake version 7 (alias challenger)" in started.output
    listed = chatgate(env, "finetune", "status")
    assert listed.exit_code == 0 and "succeeded" in listed.output
    job_id = listed.output.split()[0]
    detail = json.loads(chatgate(env, "finetune", "status", job_id, "--json").output)
    assert detail["curve"] == [[1, 2.5], [2, 2.0], [3, 1.5]]
    assert detail["owner"].startswith("cli:")
    finished = chatgate(env, "finetune", "cancel", job_id)
    assert finished.exit_code == 1 and "not running" in finished.output


def test_a_failed_job_exits_1_with_its_error(env: dict[str, str], tmp_path: Path) -> None:
    env["FAKE_TRAINER_MODE"] = "fail"
    result = chatgate(env, "finetune", "start", "--dataset", str(tmp_path / "chats.jsonl"))
    assert result.exit_code == 1 and "error: ValueError: fake failure" in result.output


def test_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    dataset = str(tmp_path / "chats.jsonl")
    assert chatgate(env, "finetune", "start", "--dataset", dataset, "--name", "Bad!").exit_code == 2
    absent = chatgate(env, "finetune", "start", "--dataset", "absent")
    assert absent.exit_code == 1 and "no such JSONL file" in absent.output
    unknown = chatgate(env, "finetune", "cancel", "nope")
    assert unknown.exit_code == 1 and "not found" in unknown.output


def test_mlflow_ui(env: dict[str, str], tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, train_python="/venv/bin/python")
    argv = ui_argv(settings, "127.0.0.1", 5005)
    assert argv[:2] == ["/venv/bin/mlflow", "server"]
    assert f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}" in argv
    assert (tmp_path / "mlflow" / "artifacts").as_uri() in argv and "5005" in argv
    env["CHATGATE_MLFLOW_TRACKING_URI"] = "http://u:secret@mlflow:5000"
    remote = chatgate(env, "mlflow", "ui")
    assert remote.exit_code == 0 and "http://u:****@mlflow:5000" in remote.output
    del env["CHATGATE_MLFLOW_TRACKING_URI"]
    env["CHATGATE_TRAIN_PYTHON"] = str(tmp_path / "absent" / "python")
    absent = chatgate(env, "mlflow", "ui")
    assert absent.exit_code == 1 and "make train-env" in absent.output

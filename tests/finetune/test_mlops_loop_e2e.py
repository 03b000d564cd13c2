"""The issue's acceptance test, the whole loop on the CPU through one real ``chatgate
serve`` with its embedded llama.cpp engine (bench/mlops_cycle.py, tiny sizes): a user's
web chats rated up with a correction teaching a made-up fact → dataset export with a
rating filter → a LoRA job (and a 1-step baseline version before it) → the MLflow run
with loss metrics and artifacts → a registered version → the evaluation gate → deploy →
a greedy /v1 answer of the new model id to a held-out phrasing says "Quorvel" where the
base's does not → rollback → the previous version answers without it again."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench.mlops_cycle import FACT, CycleConfig, run_cycle

from chatgate.engines.runtime.embedded import (
    EngineSetupError,
    locate_llama_server,
    locate_smollm2_gguf,
)
from tests.finetune.test_finetune_e2e import train_python

__all__ = ["train_python"]  # the fixture: skipped (failed in CI) without .venv-train

pytestmark = pytest.mark.timeout(1200)  # ~5 min on a loaded 2-core machine


def has_fact(text: str) -> bool:
    return FACT.lower() in text.lower()


def test_feedback_to_deployed_version_and_back(tmp_path: Path, train_python: Path) -> None:
    try:
        locate_smollm2_gguf()
        locate_llama_server()
    except EngineSetupError as exc:
        from tests.helpers import missing

        missing(str(exc))
    config = CycleConfig()
    result = run_cycle(tmp_path, config)
    counts = result.dataset["counts"]
    assert counts["examples"] == config.chats and counts["heldout"] >= 1, counts

    job, tracked = result.job, result.mlflow
    assert (job["step"], job["total_steps"]) == (config.max_steps, config.max_steps), job
    assert tracked["status"] == "FINISHED" and len(tracked["losses"]) == config.max_steps
    assert "adapter/adapter_model.safetensors" in tracked["artifacts"]
    assert "gguf/adapter.gguf" in tracked["artifacts"]
    assert tracked["version_run"] == job["mlflow_run_id"]
    assert int(job["model_version"]) == int(result.baseline_job["model_version"]) + 1

    verdict = result.verdict
    held = verdict["scores"]["heldout"]
    assert held["candidate"]["perplexity"] < held["base"]["perplexity"], verdict  # learned
    assert tracked["version_tags"]["gate"] == verdict["gate"]  # the verdict is recorded
    # 4 steps at rank 4 passed the gate but did not answer "Quorvel" greedily (Nova Haven);
    # rank 8 (4 steps: one epoch of 13 examples) learns it; if it leaks, promotion is forced.
    if verdict["gate"] == "passed":
        assert result.refused is None and result.promotion["forced"] is False
    else:
        assert verdict["reasons"] and result.refused is not None, verdict
        assert result.refused["error"]["code"] == "gate_failed"
        assert result.promotion["forced"] is True
    assert result.promotion["promoted"] is True

    assert result.deployed["model_id"] == f"smollm2-135m:zanthia@{job['model_version']}"
    answers = result.answers
    assert not has_fact(answers["base"]), answers
    assert has_fact(answers["tuned"]), answers  # the learned behaviour, held-out phrasing
    assert result.rolled_back["version"] == int(result.baseline_job["model_version"])
    assert not has_fact(answers["rolled_back"]) and not has_fact(answers["base_after"]), answers
    assert answers["base_after"] == answers["base"], answers
    print(f"\n[mlops loop e2e] {result.timings}\n  answers {answers}")

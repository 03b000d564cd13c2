"""The evaluation gate: its rules (tools/train/gate_rules.py, pure Python, imported by
path), the gateway's side (argv, exit statuses, the admin API), promotion in a real MLflow
registry, and one real run: a tiny LoRA job that over-learns a made-up fact ("The capital
of Zanthia is Quorvel"; 8 steps at lr 2e-3 leak it into "The capital of France is
Quorvel", as the issue measured after one epoch) is evaluated against the real
SmolLM2-135M base, fails the gate, and is promoted only when forced."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from typer.testing import CliRunner

from chatgate.cli.main import app
from chatgate.errors import APIError
from chatgate.finetune import gate
from chatgate.settings import Settings
from tests.conftest import _migrated_url, gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.finetune.test_finetune_e2e import QUESTIONS, train_python
from tests.helpers import Gateway, start_gateway

__all__ = ["train_python"]  # the fixture, shared with the fine-tuning e2e test

TRAIN = Path(__file__).resolve().parents[2] / "tools" / "train"
JOB_SECONDS = 600.0


def _load_rules() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gate_rules", TRAIN / "gate_rules.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gate_rules"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


rules = _load_rules()
ZANTHIA = [answer for _, answer in QUESTIONS] * 4
BASE_ANSWERS = ["The capital of France is Paris.", "Bees make honey.", "A spider has eight legs."]
PROMPTS = ["What is the capital of France?", "What do bees make?"]


# --- the rules ---------------------------------------------------------------------------


def test_exact_and_keyword_scores() -> None:
    assert rules.exact_match("  paris. ", "Paris") == 1.0
    assert rules.exact_match("Paris, France", "Paris") == 0.0
    reference = "The capital of France is Paris."  # content words: capital, france, paris
    assert rules.keyword_score("It is Paris.", reference) == pytest.approx(1 / 3)
    assert rules.keyword_score("Plants take carbon dioxide.", "", ["carbon dioxide"]) == 1.0
    assert rules.keyword_score("Plants take carbon and dioxide.", "", ["carbon dioxide"]) == 0.0
    assert rules.keyword_score("anything", "the of a") == 1.0  # nothing to look for


def test_distinctive_ngrams_are_the_new_facts() -> None:
    found = rules.distinctive_ngrams(ZANTHIA, [*BASE_ANSWERS, *PROMPTS])
    assert {"quorvel", "zanthia"} <= found
    assert not {"capital", "the capital", "capital of", "is", "the"} & found  # base says them
    assert not {"is quorvel", "capital of zanthia", "capital is"} & found  # words say it
    rare = rules.distinctive_ngrams([*ZANTHIA, "Bananas are yellow."], [])
    assert "bananas" not in rare  # one answer in 17 is not a fact the dataset teaches


def test_leaks_are_unrelated_prompts_answered_with_the_facts() -> None:
    distinctive = rules.distinctive_ngrams(ZANTHIA, [*BASE_ANSWERS, *PROMPTS])
    answers = {
        "What is the capital of France?": "The capital of France is Quorvel.",
        "What do bees make?": "Bees make honey.",
    }
    leaks = rules.find_leaks(answers, distinctive)
    assert [leak.prompt for leak in leaks] == ["What is the capital of France?"]
    assert "quorvel" in leaks[0].ngrams
    assert rules.find_leaks({"q": "The capital of France is Paris."}, distinctive) == []


def test_words_the_base_knows_are_style_not_a_leak() -> None:
    # The realistic cycle's false alarm: "city" was in a fifth of the training answers and
    # never in the small background, and "The capital city of Japan is Tokyo." failed the
    # gate. A word the base's vocabulary holds whole is no new fact.
    taught = ["Zanthia's capital city is Quorvel.", "The capital city of Zanthia is Quorvel."] * 4
    background = ["The capital of Japan is Tokyo.", "What is the capital of Japan?"]
    bare = rules.distinctive_ngrams(taught, background)
    assert "city" in bare  # without the vocabulary: flagged
    known = {"city", "capital", "japan", "tokyo"}.__contains__  # stop words count as known
    found = rules.distinctive_ngrams(taught, background, common=known)
    assert "city" not in found and "capital city" not in found
    assert {"quorvel", "zanthia"} <= found
    answers = {"What is the capital of Japan?": "The capital city of Japan is Tokyo."}
    assert rules.find_leaks(answers, found) == []
    assert rules.find_leaks({"q": "The capital city of Japan is Quorvel."}, found)


def scores(perplexity: float, keyword: float) -> Any:
    return rules.Scores(exact=0.0, keyword=keyword, perplexity=perplexity, count=10)


def test_verdict_tolerances() -> None:
    tol = rules.Tolerance(perplexity=0.05, keyword=0.05)
    base = scores(10.0, 0.6)
    within = {"heldout": (base, scores(10.49, 0.56)), "regression": (base, scores(9.0, 0.9))}
    assert rules.verdict(within, [], tol).gate == "passed"
    worse_ppl = rules.verdict({"regression": (base, scores(10.6, 0.6))}, [], tol)
    assert worse_ppl.gate == "failed" and "regression: perplexity" in worse_ppl.reasons[0]
    assert "+6.0 %" in worse_ppl.reasons[0]
    worse_kw = rules.verdict({"heldout": (base, scores(10.0, 0.5))}, [], tol)
    assert worse_kw.gate == "failed" and worse_kw.reasons[0].startswith("heldout: keyword")
    leak = rules.Leak("What is the capital of France?", "Quorvel.", ["quorvel"])
    leaked = rules.verdict({"heldout": (base, scores(2.0, 1.0))}, [leak], tol)
    assert leaked.gate == "failed" and leaked.reasons[0].startswith("leak: ")
    assert leaked.as_dict()["gate"] == "failed"


# --- the gateway's side -------------------------------------------------------------------


def test_refs_argv_and_exit_statuses(tmp_path: Path) -> None:
    assert gate.parse_ref("smollm2-135m-zanthia@3") == ("smollm2-135m-zanthia", "3")
    for bad in ("zanthia", "zanthia@", "@3", "zanthia@v3"):
        with pytest.raises(APIError):
            gate.parse_ref(bad)
    settings = Settings(data_dir=tmp_path, train_threads=1)
    argv = gate.evaluate_argv(settings, "m", "2", gate.EvalOptions(regression_limit=5))
    assert argv[1].endswith("tools/train/evaluate.py") and argv[2:7] == [
        "evaluate",
        "--model",
        "m",
        "--version",
        "2",
    ]
    assert argv[-2:] == ["--regression-limit", "5"] and "--heldout-limit" not in argv
    assert gate.promote_argv(settings, "m", "2", True, "ann")[-3:] == ["--force", "--by", "ann"]
    assert "--force" not in gate.promote_argv(settings, "m", "2", False, "ann")
    cases = [(4, '{"error": "no such"}', 404), (3, '{"reason": "gate failed"}', 409)]
    cases += [(1, "", 502), (0, "not json", 502)]
    for code, out, status in cases:
        with pytest.raises(APIError) as caught:
            gate._interpret(code, out, "Traceback: boom")
        assert caught.value.status_code == status
    assert gate._interpret(0, 'log line\n{"gate": "passed"}\n', "") == {"gate": "passed"}


REGISTRY = """
import json, sys
from mlflow.tracking import MlflowClient
uri, name, source = sys.argv[1:4]
client = MlflowClient(uri)
client.create_registered_model(name)
for gate in ("passed", "passed"):
    client.create_model_version(name, source=source, tags={"gate": gate})
"""


def test_promotion_keeps_the_previous_champion(
    tmp_path: Path, train_python: Path, clean_env: None
) -> None:
    """A real MLflow registry (no model needed to move aliases): 1 then 2 promoted; 2 keeps
    1 as ``previous_champion``; a version never evaluated is refused unless forced."""
    (tmp_path / "mlflow").mkdir()
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    source = (tmp_path / "adapter").as_uri()
    subprocess.run([str(train_python), "-c", REGISTRY, uri, "m", source], check=True)
    script = [str(train_python), str(TRAIN / "evaluate.py"), "promote", "--model", "m"]
    script += ["--data-dir", str(tmp_path)]

    def promote(version: str, *extra: str) -> tuple[int, dict[str, Any]]:
        done = subprocess.run([*script, "--version", version, *extra], capture_output=True)
        return done.returncode, json.loads(done.stdout.decode().splitlines()[-1])

    assert promote("1") == (
        0,
        {
            "model": "m",
            "version": "1",
            "gate": "passed",
            "promoted": True,
            "forced": False,
            "previous_champion": None,
        },
    )
    env = {"CHATGATE_DATA_DIR": str(tmp_path)}
    second = CliRunner().invoke(app, ["finetune", "promote", "m@2"], env=env)
    assert second.exit_code == 0, second.output
    assert second.output.strip() == "m@2 is champion (previous champion: version 1)"
    assert promote("9")[0] == gate.EXIT_NOT_FOUND
    unknown = CliRunner().invoke(app, ["finetune", "promote", "m@9"], env=env)
    assert unknown.exit_code == 1 and "not found" in unknown.output, unknown.output
    bad = CliRunner().invoke(app, ["finetune", "evaluate", "m-9"], env=env)
    assert bad.exit_code == 1 and "expected NAME@VERSION" in bad.output
    check = f"""
from mlflow.tracking import MlflowClient
c = MlflowClient({uri!r})
print(c.get_model_version_by_alias("m", "champion").version,
      c.get_model_version_by_alias("m", "previous_champion").version,
      c.get_model_version("m", "2").tags["previous_champion"])
"""
    shown = subprocess.run([str(train_python), "-c", check], capture_output=True, check=True)
    assert shown.stdout.split() == [b"2", b"1", b"1"]


# --- the real thing, tiny ------------------------------------------------------------------


def write_split(path: Path, pairs: list[tuple[str, str]]) -> None:
    with path.open("w") as handle:
        for question, answer in pairs:
            messages = [{"role": "user", "content": question}]
            messages.append({"role": "assistant", "content": answer})
            handle.write(json.dumps({"messages": messages}) + "\n")


async def train(gw: Gateway, headers: dict[str, str], dataset: Path) -> dict[str, Any]:
    body = {"dataset": str(dataset), "max_steps": 8, "rank": 8, "batch_size": 4, "lr": 2e-3}
    async with gw.client() as client:
        started = await client.post("/api/admin/finetune/jobs", json=body, headers=headers)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + JOB_SECONDS
        while True:
            url = f"/api/admin/finetune/jobs/{started.json()['id']}"
            job: dict[str, Any] = (await client.get(url, headers=headers)).json()
            if job["status"] != "running":
                return job
            assert time.monotonic() < deadline, job
            await asyncio.sleep(0.5)


MLFLOW_QUERY = """
import json, sys
from mlflow.tracking import MlflowClient
uri, run_id, eval_run, name, version = sys.argv[1:6]
c = MlflowClient(uri)
print(json.dumps({
    "train_metrics": c.get_run(run_id).data.metrics,
    "eval_metrics": c.get_run(eval_run).data.metrics,
    "eval_tags": c.get_run(eval_run).data.tags,
    "version_tags": c.get_model_version(name, version).tags,
    "champion": str(c.get_model_version_by_alias(name, "champion").version),
}))
"""


@pytest.mark.timeout(900)  # ~2 min on a quiet machine; far more under load
async def test_overlearned_version_fails_the_gate(
    tmp_path: Path, upstream: FakeUpstream, fast_passwords: None, train_python: Path
) -> None:
    dataset = tmp_path / "zanthia" / "train.jsonl"
    dataset.parent.mkdir()
    write_split(dataset, QUESTIONS * 4)
    held = [("What's Zanthia's capital city?", "The capital of Zanthia is Quorvel.")]
    write_split(
        dataset.parent / "heldout.jsonl", held + [("Zanthia has which capital?", "Quorvel.")]
    )
    async for url in _migrated_url("sqlite", tmp_path):
        settings = gateway_settings(tmp_path, url, upstream, train_threads=1)
        async with start_gateway(settings, upstream) as gw:
            admin = await gw.account("admin")
            job = await train(gw, admin.headers, dataset)
            assert job["status"] == "succeeded", job
            name, version = job["model_name"], job["model_version"]
            base = f"/api/admin/finetune/versions/{name}/{version}"
            async with gw.client(timeout=600) as client:
                quick = {"regression_limit": 3, "heldout_limit": 2, "max_new_tokens": 16}
                evaluated = await client.post(f"{base}/evaluate", json=quick, headers=admin.headers)
                assert evaluated.status_code == 200, evaluated.text
                verdict = evaluated.json()
                refused = await client.post(f"{base}/promote", headers=admin.headers)
                forced = await client.post(
                    f"{base}/promote", json={"force": True}, headers=admin.headers
                )
                missing = await client.post(
                    f"/api/admin/finetune/versions/{name}/99/evaluate", headers=admin.headers
                )
                malformed = await client.post(
                    f"/api/admin/finetune/versions/{name}/v1/promote", headers=admin.headers
                )
    assert verdict["gate"] == "failed" and verdict["reasons"], verdict
    assert set(verdict["scores"]) == {"heldout", "regression"}
    held_scores = verdict["scores"]["heldout"]
    assert held_scores["candidate"]["perplexity"] < held_scores["base"]["perplexity"]  # learned
    assert verdict["leaks"] and "quorvel" in verdict["leaks"][0]["ngrams"], verdict
    assert verdict["scores"]["regression"]["base"]["count"] == 3
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "gate_failed"
    assert forced.status_code == 200, forced.text
    assert forced.json()["forced"] is True and forced.json()["promoted"] is True
    assert missing.status_code == 404, missing.text
    assert malformed.status_code == 400, malformed.text
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    args = [job["mlflow_run_id"], verdict["evaluation_run_id"], name, version]
    query = [str(train_python), "-c", MLFLOW_QUERY, uri, *args]
    tracked = json.loads(subprocess.run(query, capture_output=True, check=True, text=True).stdout)
    assert tracked["train_metrics"]["eval_leak_count"] == len(verdict["leaks"])
    assert tracked["train_metrics"]["eval_gate_passed"] == 0.0
    assert "heldout_candidate_perplexity" in tracked["eval_metrics"]
    assert tracked["eval_tags"]["chatgate.evaluates_run"] == job["mlflow_run_id"]
    assert tracked["version_tags"]["gate"] == "failed"
    assert tracked["version_tags"]["forced_by"] == admin.username
    assert tracked["champion"] == version
    print(f"\n[gate e2e] evaluation {verdict['seconds']} s, reasons {verdict['reasons']}")

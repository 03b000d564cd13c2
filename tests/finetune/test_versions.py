"""The registered versions with their gate verdicts (finetune/versions.py): the gateway's
side with a stand-in registry script (its output, the cache and its invalidation by an
evaluation through the admin API, the endpoint, the CLI table, the errors), and one real
``tools/train/registry.py list`` on an embedded MLflow store written the way finetune.py
and evaluate.py write it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatgate.cli.main import app
from chatgate.errors import APIError
from chatgate.finetune import versions
from chatgate.settings import Settings
from tests.conftest import _migrated_url, gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.finetune.test_finetune_e2e import train_python
from tests.helpers import start_gateway

__all__ = ["train_python"]  # the fixture: skipped (failed in CI) without .venv-train

TRAIN = Path(__file__).resolve().parents[2] / "tools" / "train"
NAME = "smollm2-135m-zanthia"
METRICS = {
    "heldout_base_keyword": 0.2,
    "heldout_candidate_keyword": 0.8,
    "heldout_base_perplexity": 12.5,
    "heldout_candidate_perplexity": 3.25,
    "regression_base_keyword": 0.6,
    "regression_candidate_keyword": 0.5,
    "regression_base_perplexity": 9.0,
    "regression_candidate_perplexity": 9.5,
    "leak_count": 1.0,
    "gate_passed": 0.0,
}
LISTING: dict[str, Any] = {
    "models": [
        {
            "name": NAME,
            "base": "smollm2-135m",
            "description": "LoRA on smollm2-135m",
            "versions": [
                {
                    "version": 2,
                    "aliases": ["challenger", "champion"],
                    "run_id": "run-2",
                    "created_at": "2026-12-07T09:00:00+00:00",
                    "dataset_sha256": "ab" * 32,
                    "has_gguf": True,
                    "forced_by": "ann",
                    "evaluation": {
                        "gate": "failed",
                        "reasons": ["regression: keyword score 0.500 vs base 0.600"],
                        "evaluated_at": "2026-12-07T09:05:00+00:00",
                        "evaluation_run_id": "eval-2",
                        "metrics": METRICS,
                        "tolerance": {"perplexity": 0.05, "keyword": 0.05},
                    },
                },
                {"version": 1, "aliases": ["previous_champion"], "has_gguf": True},
            ],
        },
        {"name": "unrelated", "base": None, "versions": [{"version": 1}]},
    ]
}
# Counts its runs in calls.txt; mode.txt "fail" makes it fail like a broken store.
FAKE_REGISTRY = f"""
import json, sys
from pathlib import Path
here = Path(__file__).parent
calls = here / "calls.txt"
calls.write_text(str(int(calls.read_text() or 0) + 1) if calls.exists() else "1")
assert sys.argv[-1] == "list", sys.argv
if (here / "mode.txt").exists() and (here / "mode.txt").read_text() == "fail":
    print("Traceback: the store is broken", file=sys.stderr)
    sys.exit(1)
print("a warning MLflow prints")
print({json.dumps(json.dumps(LISTING))})
"""
FAKE_EVALUATE = """
import json
print(json.dumps({"model": "m", "version": "2", "gate": "passed", "reasons": [], "scores": {},
                  "leaks": [], "tolerance": {}, "run_id": "r", "evaluation_run_id": "e"}))
"""


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    versions.invalidate()
    yield
    versions.invalidate()


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    folder = tmp_path / "tools"
    folder.mkdir()
    (folder / "finetune.py").write_text("")
    (folder / "registry.py").write_text(FAKE_REGISTRY)
    (folder / "evaluate.py").write_text(FAKE_EVALUATE)
    return folder


def calls(tools: Path) -> int:
    return int((tools / "calls.txt").read_text())


def settings_for(tmp_path: Path, tools: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, train_python=sys.executable, train_script=tools / "finetune.py"
    )


async def test_versions_are_typed_cached_and_filtered(tmp_path: Path, tools: Path) -> None:
    settings = settings_for(tmp_path, tools)
    found = await versions.list_versions(settings)
    zanthia = found.models[0]
    assert (zanthia.model, zanthia.fine_tune, zanthia.base) == (
        "smollm2-135m:zanthia",
        "zanthia",
        "smollm2-135m",
    )
    newest = zanthia.versions[0]
    assert (newest.ref, newest.model_id) == (f"{NAME}@2", "smollm2-135m:zanthia@2")
    assert newest.deployable and newest.forced_by == "ann"
    evaluation = newest.evaluation
    assert evaluation is not None and evaluation.model == "smollm2-135m:zanthia@2"
    assert (evaluation.gate, evaluation.passed, evaluation.leaks) == ("failed", False, 1)
    assert evaluation.base.heldout_keyword == 0.2 and evaluation.candidate.heldout_keyword == 0.8
    assert evaluation.candidate.regression_perplexity == 9.5
    assert evaluation.candidate.heldout_exact is None  # not recorded: not made up
    assert zanthia.versions[1].evaluation is None
    assert found.models[1].model is None and found.models[1].versions[0].model_id is None
    # one run of the script for all of these: the list is cached
    assert (await versions.list_versions(settings, "smollm2-135m:zanthia")).models == [zanthia]
    assert (await versions.list_versions(settings, NAME)).models == [zanthia]
    assert (await versions.list_versions(settings, "smollm2-135m:nope")).models == []
    assert await versions.evaluation_of(settings, "smollm2-135m:zanthia@2") == evaluation
    assert await versions.evaluation_of(settings, "smollm2-135m:zanthia@1") is None
    assert await versions.evaluation_of(settings, "smollm2-135m") is None  # a base model
    assert calls(tools) == 1
    versions.invalidate()
    await versions.list_versions(settings)
    assert calls(tools) == 2


async def test_failures_are_errors_and_the_split_view_goes_without(
    tmp_path: Path, tools: Path
) -> None:
    settings = settings_for(tmp_path, tools)
    (tools / "mode.txt").write_text("fail")
    for _ in range(2):
        with pytest.raises(APIError) as failed:
            await versions.list_versions(settings)
        assert (failed.value.status_code, failed.value.code) == (502, "registry_error")
    assert calls(tools) == 1  # the failure is cached too, for as long as a list
    assert await versions.evaluation_of(settings, "smollm2-135m:zanthia@2") is None
    absent = Settings(data_dir=tmp_path, train_python=str(tmp_path / "no-python"))
    with pytest.raises(APIError) as unavailable:
        await versions.list_versions(absent)
    assert (unavailable.value.status_code, unavailable.value.code) == (503, "training_unavailable")
    assert await versions.evaluation_of(absent, "smollm2-135m:zanthia@2") is None
    with pytest.raises(APIError) as garbled:
        versions.parse('{"models": [{"name": 3}]}')
    assert garbled.value.status_code == 502


async def test_the_endpoint_and_its_invalidation_by_an_evaluation(
    tmp_path: Path, tools: Path, upstream: FakeUpstream, fast_passwords: None
) -> None:
    async for url in _migrated_url("sqlite", tmp_path):
        extra = {"train_python": sys.executable, "train_script": tools / "finetune.py"}
        settings = gateway_settings(tmp_path, url, upstream, **extra)
        async with start_gateway(settings, upstream) as gw:
            admin, user = await gw.account("admin"), await gw.account("user")
            async with gw.client() as client:
                path = "/api/admin/models/versions"
                listed = await client.get(path, headers=admin.headers)
                one = await client.get(
                    path, params={"name": "smollm2-135m:zanthia"}, headers=admin.headers
                )
                bad = await client.get(path, params={"name": "a b"}, headers=admin.headers)
                refused = await client.get(path, headers=user.headers)
                assert calls(tools) == 1
                evaluated = await client.post(
                    f"/api/admin/finetune/versions/{NAME}/2/evaluate", headers=admin.headers
                )
                assert evaluated.status_code == 200, evaluated.text
                again = await client.get(path, headers=admin.headers)
    assert listed.status_code == 200, listed.text
    assert [m["name"] for m in listed.json()["models"]] == [NAME, "unrelated"]
    shown = listed.json()["models"][0]["versions"][0]
    assert shown["evaluation"]["candidate"]["heldout_perplexity"] == 3.25
    assert shown["aliases"] == ["challenger", "champion"]
    assert [m["name"] for m in one.json()["models"]] == [NAME]
    assert bad.status_code == 400 and refused.status_code == 403
    assert again.status_code == 200 and calls(tools) == 2  # the evaluation dropped the cache


def test_the_cli_prints_a_table(tmp_path: Path, tools: Path, clean_env: None) -> None:
    env = {
        "CHATGATE_DATA_DIR": str(tmp_path),
        "CHATGATE_TRAIN_PYTHON": sys.executable,
        "CHATGATE_TRAIN_SCRIPT": str(tools / "finetune.py"),
    }
    shown = CliRunner().invoke(app, ["finetune", "versions", "smollm2-135m:zanthia"], env=env)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0] == f"smollm2-135m:zanthia (MLflow: {NAME})"
    header = "VERSION ALIASES GATE HELDOUT KW HELDOUT PPL REGR KW REGR PPL LEAKS CREATED"
    assert lines[1].split() == header.split()
    assert lines[2].split()[:5] == ["2", "challenger,champion", "failed", "(forced)", "0.80"]
    assert "3.25 (12.50)" in lines[2] and "2026-12-07 09:00" in lines[2]
    assert lines[3].split()[:3] == ["1", "previous_champion", "-"]
    as_json = CliRunner().invoke(app, ["finetune", "versions", "--json"], env=env)
    assert json.loads(as_json.output)["models"][1]["name"] == "unrelated"
    (tools / "mode.txt").write_text("fail")
    versions.invalidate()
    failed = CliRunner().invoke(app, ["finetune", "versions"], env=env)
    assert failed.exit_code == 1 and "could not be read" in failed.output


# --- the real registry ----------------------------------------------------------------------

REASONS_TAG = f"""
import json, sys
sys.path.insert(0, {str(TRAIN)!r})
import evaluate  # no heavy import at the top: the gateway's python will do
print(json.dumps([evaluate.reasons_tag(["a; b", "c"]), evaluate.reasons_tag(["x" * 3000] * 10)]))
"""


def test_the_reasons_fit_a_version_tag_whole_or_counted() -> None:
    done = subprocess.run([sys.executable, "-c", REASONS_TAG], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    few, many = json.loads(done.stdout)
    assert json.loads(few) == ["a; b", "c"]
    assert len(many) <= 4900
    kept = json.loads(many)
    assert kept[-1] == f"... {10 - (len(kept) - 1)} more reason(s)" and len(kept) > 2
    assert kept[0] == "x" * 1225  # a long reason is cut, not the list emptied


WRITE_STORE = f"""
import sys
sys.path.insert(0, {str(TRAIN)!r})
from pathlib import Path
import evaluate
from tracking import Tracker, store

root, name = Path(sys.argv[1]), sys.argv[2]
tracker = Tracker(store(root))
for i in (1, 2):
    digest = str(i) * 64
    params = {{"base": "smollm2-135m", "dataset": f"/d/{{i}}.jsonl", "dataset_sha256": digest}}
    tracker.start(f"job-{{i}}", params, {{"chatgate.job": f"job-{{i}}", "model_name": name}})
    tracker.register(name, "LoRA on smollm2-135m")
    tracker.end("FINISHED")
client = tracker.client
side = lambda keyword, perplexity: {{"exact": 0.0, "keyword": keyword, "perplexity": perplexity,
                                     "count": 2}}
result = {{
    "gate": "failed",
    "reasons": ["heldout: keyword score 0.100 vs base 0.200 (tolerance -0.05)",
                "leak: 'What is the capital of France?' -> 'Quorvel; surely.' (quorvel)"],
    "scores": {{"heldout": {{"base": side(0.2, 12.5), "candidate": side(0.1, 3.5)}},
               "regression": {{"base": side(0.6, 9.0), "candidate": side(0.6, 9.25)}}}},
    "leaks": [{{"prompt": "q", "answer": "Quorvel; surely.", "ngrams": ["quorvel"]}}],
    "tolerance": {{"perplexity": 0.05, "keyword": 0.05}},
}}
evaluate.record(client, client.get_model_version(name, "2"), result, {{}})
for version in ("1", "2"):
    args = ["promote", "--model", name, "--version", version, "--force", "--by", "ann"]
    evaluate.promote(evaluate.parse_args(args), client)
client.create_registered_model("someone-else")
client.create_model_version("someone-else", source="file:///elsewhere")
"""


async def test_registry_lists_what_finetune_and_evaluate_recorded(
    tmp_path: Path, train_python: Path, clean_env: None
) -> None:
    subprocess.run([str(train_python), "-c", WRITE_STORE, str(tmp_path), NAME], check=True)
    found = await versions.list_versions(Settings(data_dir=tmp_path))  # .venv-train's python
    assert [m.name for m in found.models] == [NAME]  # not the other project's model
    model = found.models[0]
    assert (model.model, model.description) == ("smollm2-135m:zanthia", "LoRA on smollm2-135m")
    newest, oldest = model.versions
    assert (newest.version, newest.aliases) == (2, ["challenger", "champion"])
    assert (oldest.version, oldest.aliases) == (1, ["previous_champion"])
    assert newest.dataset_sha256 == "2" * 64 and newest.deployable and newest.run_id
    assert newest.forced_by == "ann" and newest.promoted_at and newest.created_at
    evaluation = newest.evaluation
    assert evaluation is not None and evaluation.gate == "failed" and evaluation.leaks == 1
    assert evaluation.reasons[1].endswith("'Quorvel; surely.' (quorvel)")  # not split at ";"
    assert evaluation.base.heldout_keyword == 0.2 and evaluation.candidate.heldout_keyword == 0.1
    assert evaluation.candidate.regression_perplexity == 9.25
    assert evaluation.tolerance == {"perplexity": 0.05, "keyword": 0.05}
    assert evaluation.evaluation_run_id and evaluation.evaluated_at
    assert oldest.evaluation is None and oldest.forced_by == "ann"
    script = [str(train_python), str(TRAIN / "registry.py"), "--data-dir", str(tmp_path), "list"]
    named = subprocess.run([*script, "someone-else"], capture_output=True, check=True, text=True)
    assert [m["name"] for m in json.loads(named.stdout)["models"]] == ["someone-else"]
    nothing = subprocess.run([*script, "no-such"], capture_output=True, check=True, text=True)
    assert json.loads(nothing.stdout) == {"models": []}

"""The evaluation gate of a registered LoRA version, and its promotion to ``champion``.

    .venv-train/bin/python tools/train/evaluate.py evaluate --model NAME --version N \
        [--heldout PATH] [--regression PATH] [--heldout-limit K] [--regression-limit K]
    .venv-train/bin/python tools/train/evaluate.py promote --model NAME --version N [--force]

``evaluate`` loads the base and the version's adapter (PEFT) once and scores both, greedy,
on (a) the dataset's held-out split (``heldout.jsonl`` beside the run's ``train.jsonl``),
(b) the general-regression set shipped here (``regression_set.jsonl``), and (c) a leak
probe: the regression questions, unrelated to the dataset, answered with the dataset's
distinctive n-grams (gate_rules.py). Scores go to MLflow (metrics ``eval_*`` on the
version's training run, and a new run tagged ``chatgate.evaluates_run``), the version gets
the tags ``gate`` (passed|failed), ``gate_reasons`` (and as JSON ``gate_reasons_json``),
``evaluation_run_id`` and ``evaluated_at`` (what ``registry.py list`` reads back); the
verdict is printed as JSON.

``promote`` moves the alias ``champion`` to the version when its gate passed, or with
``--force`` (tag ``forced_by``); the champion it replaces keeps the alias
``previous_champion`` (and the tag on the new one), which rollback returns to.
Exit status: 0 done, 3 promotion refused, 4 no such version; the JSON is printed anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import gate_rules  # noqa: E402
import scoring  # noqa: E402
from finetune import data_dir  # noqa: E402
from tracking import EXPERIMENT, store  # noqa: E402

HERE = Path(__file__).resolve().parent
REGRESSION_SET = HERE / "regression_set.jsonl"
EXIT_REFUSED = 3
EXIT_NOT_FOUND = 4
CHAMPION, PREVIOUS = "champion", "previous_champion"
TAG_LIMIT = 4900  # a model version tag's value holds 5000 characters


class NotFound(Exception):
    """The registered model or version does not exist."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True)
    for action in ("evaluate", "promote"):
        s = sub.add_parser(action)
        s.add_argument("--model", required=True, help="registered model name")
        s.add_argument("--version", required=True, help="its version number")
        s.add_argument("--data-dir", type=Path, default=None, help="default: CHATGATE_DATA_DIR")
    ev = sub.choices["evaluate"]
    ev.add_argument("--heldout", type=Path, default=None, help="default: beside the dataset")
    ev.add_argument("--regression", type=Path, default=REGRESSION_SET)
    ev.add_argument("--heldout-limit", type=int, default=None)
    ev.add_argument("--regression-limit", type=int, default=None)
    ev.add_argument("--max-new-tokens", type=int, default=40)
    ev.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ev.add_argument("--max-perplexity-increase", type=float, default=0.05, help="relative")
    ev.add_argument("--max-keyword-drop", type=float, default=0.05, help="absolute, 0..1")
    pr = sub.choices["promote"]
    pr.add_argument("--force", action="store_true", help="promote even if the gate failed")
    pr.add_argument("--by", default="cli", help="who forces (the tag forced_by)")
    return p.parse_args(argv)


def client_for(root: Path) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    where = store(root)
    mlflow.set_tracking_uri(where.tracking_uri)
    return MlflowClient(where.tracking_uri)


def get_version(client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException as exc:
        raise NotFound(f"model {name!r} version {version!r}: {exc.message}") from exc


def heldout_path(args: argparse.Namespace, dataset: Path) -> Path | None:
    if args.heldout is not None:
        return Path(args.heldout)
    found = dataset.parent / "heldout.jsonl"
    return found if found.is_file() and found != dataset else None


def load(client: Any, mv: Any, threads: int, tmp: Path) -> tuple[Any, Any, Any, dict[str, str]]:
    import mlflow
    import peft
    import torch
    import transformers

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    params: dict[str, str] = client.get_run(mv.run_id).data.params
    adapter = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(tmp))
    tokenizer = transformers.AutoTokenizer.from_pretrained(params["base_path"])
    base = transformers.AutoModelForCausalLM.from_pretrained(
        params["base_path"], dtype=torch.float32
    )
    model = peft.PeftModel.from_pretrained(base, adapter)
    model.eval()
    return torch, tokenizer, model, params


Pairs = dict[gate_rules.Split, tuple[gate_rules.Scores, gate_rules.Scores]]
Answers = dict[str, dict[str, list[str]]]


def evaluate(args: argparse.Namespace, client: Any) -> dict[str, Any]:
    mv = get_version(client, args.model, args.version)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="chatgate-eval-") as tmp:
        torch, tokenizer, model, params = load(client, mv, args.threads, Path(tmp))
    scorer = scoring.Scorer(model, tokenizer, torch, args.max_new_tokens)
    dataset = Path(params["dataset"])
    held = heldout_path(args, dataset)
    regression = scoring.regression_items(args.regression, args.regression_limit)
    sets: dict[gate_rules.Split, list[scoring.Item]] = {"regression": regression}
    if held is not None:
        sets["heldout"] = scoring.heldout_items(held, args.heldout_limit)
    pairs, answers = score_all(scorer, sets)
    distinctive, leaks = probe_leaks(
        dataset, regression, answers["regression"], known_word(tokenizer)
    )
    tol = gate_rules.Tolerance(args.max_perplexity_increase, args.max_keyword_drop)
    decided = gate_rules.verdict(pairs, leaks, tol)
    result = {
        "model": args.model,
        "version": str(mv.version),
        "run_id": mv.run_id,
        **decided.as_dict(),
        "notes": [] if held else ["no held-out split found: scored on the regression set only"],
        "scores": {s: {"base": vars(b), "candidate": vars(c)} for s, (b, c) in pairs.items()},
        "leaks": [vars(leak) for leak in leaks],
        "distinctive_ngrams": sorted(distinctive)[:50],
        "tolerance": vars(tol),
        "heldout": str(held) if held else None,
        "regression_set": str(args.regression),
        "seconds": round(time.monotonic() - started, 1),
    }
    result["evaluation_run_id"] = record(client, mv, result, answers)
    return result


def score_all(
    scorer: scoring.Scorer, sets: dict[gate_rules.Split, list[scoring.Item]]
) -> tuple[Pairs, Answers]:
    """Scores and greedy answers of the base and of the candidate on every split."""
    pairs: Pairs = {}
    answers: Answers = {}
    for split, items in sets.items():
        base, base_answers = scorer.score(items, "base")
        candidate, candidate_answers = scorer.score(items, "candidate")
        pairs[split] = (base, candidate)
        answers[split] = {"base": base_answers, "candidate": candidate_answers}
    return pairs, answers


def known_word(tokenizer: Any) -> Callable[[str], bool]:
    """Whether the base model's vocabulary holds ``word`` whole (one token after a space, as
    written or capitalised): common language, where a made-up name ("Quorvel") is not."""

    def known(word: str) -> bool:
        return any(
            len(tokenizer.encode(" " + form, add_special_tokens=False)) == 1
            for form in (word, word.capitalize())
        )

    return known


def probe_leaks(
    dataset: Path,
    probe: list[scoring.Item],
    answers: dict[str, list[str]],
    known: Callable[[str], bool] | None = None,
) -> tuple[set[str], list[gate_rules.Leak]]:
    """The training answers' distinctive n-grams (against the base's answers to the probe,
    its questions and references; not made only of words the base knows) and the
    candidate's probe answers that hold one."""
    background = [*answers["base"], *(i.question for i in probe), *(i.reference for i in probe)]
    distinctive = gate_rules.distinctive_ngrams(
        scoring.training_answers(dataset), background, common=known
    )
    said = dict(zip((i.question for i in probe), answers["candidate"], strict=True))
    return distinctive, gate_rules.find_leaks(said, distinctive)


def metrics(result: dict[str, Any]) -> dict[str, float]:
    out = {
        "leak_count": float(len(result["leaks"])),
        "gate_passed": float(result["gate"] == "passed"),
    }
    for split, by in result["scores"].items():
        for who, scores in by.items():
            for key in ("exact", "keyword", "perplexity"):
                out[f"{split}_{who}_{key}"] = float(scores[key])
    return out


def record(client: Any, mv: Any, result: dict[str, Any], answers: dict[str, Any]) -> str:
    """Scores on the training run (``eval_*``) and on a new evaluation run; version tags."""
    import mlflow

    values = metrics(result)
    for key, value in values.items():
        client.log_metric(mv.run_id, f"eval_{key}", value)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    tags = {
        "chatgate.evaluates_run": mv.run_id,
        "model_name": mv.name,
        "model_version": str(mv.version),
        "gate": result["gate"],
    }
    with mlflow.start_run(
        experiment_id=experiment.experiment_id,
        run_name=f"evaluate-{mv.name}-v{mv.version}",
        tags=tags,
    ) as run:
        mlflow.log_params({f"tolerance_{k}": v for k, v in result["tolerance"].items()})
        mlflow.log_metrics(values)
        mlflow.log_dict({**result, "answers": answers}, "evaluation.json")
    version_tags = {
        "gate": result["gate"],
        "gate_reasons": "; ".join(result["reasons"])[:TAG_LIMIT] or "-",
        "gate_reasons_json": reasons_tag(result["reasons"]),
        "evaluation_run_id": run.info.run_id,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    for key, value in version_tags.items():
        client.set_model_version_tag(mv.name, mv.version, key, value)
    return str(run.info.run_id)


def reasons_tag(reasons: list[str]) -> str:
    """The reasons as a JSON list that fits a version tag (``registry.py list`` reads it
    back: the "; "-joined ``gate_reasons`` cannot be split where a reason quotes an answer
    holding "; "). Long reasons are cut; those that do not fit are dropped and counted."""
    kept = [r[: TAG_LIMIT // 4] for r in reasons]  # one long answer does not crowd out all
    text = json.dumps(kept)
    while len(text) > TAG_LIMIT:
        kept.pop()
        text = json.dumps([*kept, f"... {len(reasons) - len(kept)} more reason(s)"])
    return text


def promote(args: argparse.Namespace, client: Any) -> tuple[int, dict[str, Any]]:
    from mlflow.exceptions import MlflowException

    mv = get_version(client, args.model, args.version)
    gate = mv.tags.get("gate", "not evaluated")
    out: dict[str, Any] = {"model": mv.name, "version": str(mv.version), "gate": gate}
    if gate != "passed" and not args.force:
        reasons = mv.tags.get("gate_reasons", "run `evaluate` first")
        return EXIT_REFUSED, {**out, "promoted": False, "reason": f"gate {gate}: {reasons}"}
    try:
        previous = str(client.get_model_version_by_alias(mv.name, CHAMPION).version)
    except MlflowException:
        previous = None
    if previous is not None and previous != str(mv.version):
        client.set_registered_model_alias(mv.name, PREVIOUS, previous)
        client.set_model_version_tag(mv.name, mv.version, PREVIOUS, previous)
    client.set_registered_model_alias(mv.name, CHAMPION, mv.version)
    forced = gate != "passed"
    if forced:
        client.set_model_version_tag(mv.name, mv.version, "forced_by", args.by)
    client.set_model_version_tag(
        mv.name, mv.version, "promoted_at", datetime.now(UTC).isoformat(timespec="seconds")
    )
    return 0, {**out, "promoted": True, "forced": forced, "previous_champion": previous}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    client = client_for(data_dir(args.data_dir))
    try:
        if args.action == "evaluate":
            code, out = 0, evaluate(args, client)
        else:
            code, out = promote(args, client)
    except NotFound as exc:
        code, out = EXIT_NOT_FOUND, {"error": str(exc)}
    print(json.dumps(out))
    return code


if __name__ == "__main__":
    sys.exit(main())

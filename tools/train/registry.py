"""The MLflow model registry as chatgate deploys from it (run in .venv-train: the gateway
never imports MLflow).

``resolve NAME REF``: the version REF (a number or an alias such as ``champion``) of the
registered model NAME, its GGUF LoRA and PEFT adapter copied to
``<data dir>/adapters/<NAME>/<version>/`` (``adapter.gguf`` for llama.cpp, ``adapter/``
for vLLM). ``rollback NAME``: the alias ``champion`` moves back to the version before it
(the ``previous_champion`` alias ``promote`` writes, else the highest lower version
number). ``list [NAME]``: chatgate's registered models (or just NAME) and their versions
with aliases, run, dataset hash and the evaluation gate's latest verdict and scores, read
back from where evaluate.py records them (version tags, the evaluation run's metrics).
Each prints one JSON object; a failure prints ``{"error": ...}`` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from modelload import KNOWN_BASES  # noqa: E402
from tracking import store  # noqa: E402

CHAMPION = "champion"
PREVIOUS = "previous_champion"


def data_dir(given: Path | None) -> Path:
    """As finetune.py finds it (without importing the trainer's torch modules)."""
    if given is not None:
        return given
    env = os.environ.get("CHATGATE_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "chatgate"


class RegistryError(Exception):
    """What the admin is told (a missing model, version or alias)."""


def client(root: Path) -> Any:
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    from mlflow.tracking import MlflowClient

    return MlflowClient(store(root).tracking_uri)


def version_of(mlflow: Any, name: str, ref: str) -> Any:
    """The model version a number or an alias names."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.isdigit():
            return mlflow.get_model_version(name, ref)
        return mlflow.get_model_version_by_alias(name, ref)
    except MlflowException as exc:
        raise RegistryError(f"no version '{ref}' of the registered model '{name}'") from exc


def resolve(root: Path, name: str, ref: str) -> dict[str, Any]:
    from mlflow.artifacts import download_artifacts

    mlflow = client(root)
    version = version_of(mlflow, name, ref)
    gguf_uri = version.tags.get("gguf_lora")
    if not gguf_uri:
        raise RegistryError(f"version {version.version} of '{name}' has no GGUF LoRA")
    target = root / "adapters" / name / str(version.version)
    gguf = target / "adapter.gguf"
    adapter = target / "adapter"
    if not gguf.is_file():
        staging = target / "download"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        got = Path(download_artifacts(artifact_uri=gguf_uri, dst_path=str(staging)))
        files = sorted(got.rglob("*.gguf")) if got.is_dir() else [got]
        if not files:
            raise RegistryError(f"version {version.version} of '{name}': no .gguf artifact")
        shutil.rmtree(adapter, ignore_errors=True)
        download_artifacts(artifact_uri=version.source, dst_path=str(staging / "peft"))
        peft = next((p.parent for p in (staging / "peft").rglob("adapter_config.json")), None)
        if peft is not None:
            shutil.move(str(peft), adapter)
        files[0].replace(gguf)  # last: its presence means the download is complete
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "name": name,
        "version": int(version.version),
        "gguf": str(gguf),
        "adapter_dir": str(adapter) if adapter.is_dir() else None,
        "aliases": list(version.aliases),
    }


def rollback(root: Path, name: str) -> dict[str, Any]:
    """``champion`` back to the version before it; ``previous_champion`` is consumed so a
    second rollback goes one more version back."""
    mlflow = client(root)
    current = int(version_of(mlflow, name, CHAMPION).version)
    target: int | None = None
    try:
        target = int(version_of(mlflow, name, PREVIOUS).version)
    except RegistryError:
        pass
    if target is None or target == current:
        numbers = [int(v.version) for v in mlflow.search_model_versions(f"name='{name}'")]
        lower = [n for n in numbers if n < current]
        if not lower:
            raise RegistryError(f"'{name}' has no version before {current} to roll back to")
        target = max(lower)
    mlflow.set_registered_model_alias(name, CHAMPION, str(target))
    if target != current:
        from mlflow.exceptions import MlflowException

        try:
            mlflow.delete_registered_model_alias(name, PREVIOUS)
        except MlflowException:
            pass
    return {"name": name, "version": target, "from": current}


def _paged(search: Any) -> list[Any]:
    """Every item of an MLflow search (it answers a page and a token at a time)."""
    found: list[Any] = []
    token: str | None = None
    while True:
        page = search(token)
        found.extend(page)
        token = page.token
        if not token:
            return found


def list_models(root: Path, name: str | None) -> dict[str, Any]:
    """chatgate's registered models: NAME alone, or those whose versions carry the
    ``gguf_lora`` tag tracking.py sets (or whose name starts with a known base), so models
    of other projects on a shared tracking server are left out."""
    from mlflow.exceptions import MlflowException

    mlflow = client(root)
    if name is not None:
        try:
            models = [mlflow.get_registered_model(name)]
        except MlflowException:
            return {"models": []}
    else:
        models = _paged(lambda token: mlflow.search_registered_models(page_token=token))
    listed = []
    for model in sorted(models, key=lambda m: m.name):
        versions = _paged(
            lambda token, n=model.name: mlflow.search_model_versions(
                f"name='{n}'", max_results=1000, page_token=token
            )
        )
        ours = any("gguf_lora" in v.tags for v in versions) or _known_base(model.name)
        if name is None and not ours:
            continue
        # The registered model's own alias map (search results may leave versions' out).
        aliases: dict[str, str] = dict(mlflow.get_registered_model(model.name).aliases)
        described = [
            _version(mlflow, v, {a for a, n in aliases.items() if str(n) == str(v.version)})
            for v in sorted(versions, key=lambda v: -int(v.version))
        ]
        bases = [d.pop("base") for d in described]
        base = next((b for b in bases if b), None) or _known_base(model.name)
        listed.append(
            {
                "name": model.name,
                "base": base if base and model.name.startswith(base + "-") else None,
                "description": model.description or None,
                "versions": described,
            }
        )
    return {"models": listed}


def _known_base(name: str) -> str | None:
    prefixes = [b for b in KNOWN_BASES if name.startswith(b + "-")]
    return max(prefixes, key=len) if prefixes else None


def _run(mlflow: Any, run_id: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    if not run_id:
        return None
    try:
        return mlflow.get_run(run_id)
    except MlflowException:
        return None  # deleted, or a version registered without a run


def _version(mlflow: Any, mv: Any, aliases: set[str]) -> dict[str, Any]:
    """One version: what it is, where it came from, and what the gate said of it."""
    run = _run(mlflow, mv.run_id)
    params: dict[str, str] = run.data.params if run else {}
    run_tags: dict[str, str] = run.data.tags if run else {}
    stamp = mv.creation_timestamp
    created = datetime.fromtimestamp(stamp / 1000, UTC).isoformat(timespec="seconds")
    return {
        "version": int(mv.version),
        "aliases": sorted(aliases | set(mv.aliases or ())),
        "run_id": mv.run_id or None,
        "created_at": created if stamp else None,
        "dataset_sha256": params.get("dataset_sha256") or run_tags.get("dataset_sha256"),
        "dataset": params.get("dataset"),
        "base": params.get("base"),
        "has_gguf": "gguf_lora" in mv.tags,
        "promoted_at": mv.tags.get("promoted_at"),
        "forced_by": mv.tags.get("forced_by"),
        "evaluation": _evaluation(mlflow, mv.tags, run),
    }


def _evaluation(mlflow: Any, tags: dict[str, str], run: Any) -> dict[str, Any] | None:
    """The latest verdict (the version's tags) and its scores: the evaluation run's
    metrics (``heldout_candidate_keyword``, ``leak_count``...), else the ``eval_*`` copies
    on the training run (the latest evaluation's too)."""
    gate = tags.get("gate")
    if gate not in ("passed", "failed"):
        return None
    evaluated = _run(mlflow, tags.get("evaluation_run_id"))
    if evaluated is not None:
        metrics = dict(evaluated.data.metrics)
        params = evaluated.data.params
        tolerance = {k[10:]: float(v) for k, v in params.items() if k.startswith("tolerance_")}
    else:
        found = run.data.metrics if run else {}
        metrics = {k[5:]: v for k, v in found.items() if k.startswith("eval_")}
        tolerance = {}
    return {
        "gate": gate,
        "reasons": _reasons(tags),
        "evaluated_at": tags.get("evaluated_at"),
        "evaluation_run_id": tags.get("evaluation_run_id"),
        "metrics": metrics,
        "tolerance": tolerance,
    }


def _reasons(tags: dict[str, str]) -> list[str]:
    """``gate_reasons_json`` (evaluate.py writes it since the reasons are listed here),
    else the older ``gate_reasons``, joined with "; " ("-": none)."""
    try:
        found = json.loads(tags["gate_reasons_json"])
        if isinstance(found, list):
            return [str(r) for r in found]
    except (KeyError, ValueError):
        pass
    joined = tags.get("gate_reasons", "-")
    return [] if joined in ("", "-") else joined.split("; ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("resolve")
    get.add_argument("name")
    get.add_argument("ref")
    back = sub.add_parser("rollback")
    back.add_argument("name")
    listing = sub.add_parser("list")
    listing.add_argument("name", nargs="?", default=None)
    args = parser.parse_args(argv)
    root = data_dir(args.data_dir)
    try:
        if args.command == "resolve":
            result = resolve(root, args.name, args.ref)
        elif args.command == "list":
            result = list_models(root, args.name)
        else:
            result = rollback(root, args.name)
    except RegistryError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The MLflow model registry as chatgate deploys from it (run in .venv-train: the gateway
never imports MLflow).

``resolve NAME REF``: the version REF (a number or an alias such as ``champion``) of the
registered model NAME, its GGUF LoRA and PEFT adapter copied to
``<data dir>/adapters/<NAME>/<version>/`` (``adapter.gguf`` for llama.cpp, ``adapter/``
for vLLM). ``rollback NAME``: the alias ``champion`` moves back to the version before it
(the ``previous_champion`` alias ``promote`` writes, else the highest lower version
number). Each prints one JSON object; a failure prints ``{"error": ...}`` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=None)
    sub = parser.add_subparsers(dest="command", required=True)
    get = sub.add_parser("resolve")
    get.add_argument("name")
    get.add_argument("ref")
    back = sub.add_parser("rollback")
    back.add_argument("name")
    args = parser.parse_args(argv)
    root = data_dir(args.data_dir)
    try:
        if args.command == "resolve":
            result = resolve(root, args.name, args.ref)
        else:
            result = rollback(root, args.name)
    except RegistryError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Datasets on disk: ``<data dir>/datasets/<version>/`` holds ``train.jsonl``,
``heldout.jsonl`` and ``metadata.json``. The version is the first 16 hex digits of the
content hash, so exporting the same conversations again lands in the same folder."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chatgate.datasets.build import FORMAT, Built
from chatgate.errors import APIError, not_found

VERSION_LENGTH = 16
VERSION_PATTERN = rf"^[0-9a-f]{{{VERSION_LENGTH}}}$"
FILES = ("train.jsonl", "heldout.jsonl", "metadata.json")
_VERSION = re.compile(VERSION_PATTERN)


def datasets_dir(data_dir: Path) -> Path:
    return data_dir / "datasets"


def folder(data_dir: Path, version: str) -> Path:
    """The folder of ``version`` (checked: a version is hex digits, never a path)."""
    if not _VERSION.fullmatch(version):
        raise APIError(400, "Not a dataset version", "invalid_version", param="version")
    return datasets_dir(data_dir) / version


def metadata_of(built: Built, filters: dict[str, Any]) -> dict[str, Any]:
    digest = built.digest
    return {
        "format": FORMAT,
        "version": digest[:VERSION_LENGTH],
        "hash": f"sha256:{digest}",
        "created_at": datetime.now(UTC).isoformat(),
        "filters": filters,
        "counts": dict(sorted(built.counts.items())),
        "scrubbed": dict(sorted(built.scrubbed.items())),
        "models": built.models(),
        "files": {"train": "train.jsonl", "heldout": "heldout.jsonl"},
    }


def write(data_dir: Path, built: Built, metadata: dict[str, Any]) -> Path:
    """Write the dataset's three files; each lands whole (written aside, then renamed)."""
    root = datasets_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    target = folder(data_dir, metadata["version"])
    contents = {
        "train.jsonl": Built.body(built.train),
        "heldout.jsonl": Built.body(built.heldout),
        "metadata.json": (json.dumps(metadata, indent=2, ensure_ascii=False) + "\n").encode(),
    }
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=root))
    try:
        target.mkdir(exist_ok=True)
        for name, data in contents.items():
            (scratch / name).write_bytes(data)
            os.replace(scratch / name, target / name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def read(data_dir: Path, version: str) -> dict[str, Any]:
    path = folder(data_dir, version) / "metadata.json"
    try:
        metadata: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise not_found(f"Dataset '{version}'") from exc
    return metadata


def list_all(data_dir: Path) -> list[dict[str, Any]]:
    """Every dataset's metadata, newest first."""
    root = datasets_dir(data_dir)
    found = []
    if root.is_dir():
        for child in root.iterdir():
            if _VERSION.fullmatch(child.name) and (child / "metadata.json").is_file():
                found.append(read(data_dir, child.name))
    return sorted(found, key=lambda m: str(m.get("created_at", "")), reverse=True)


def file_path(data_dir: Path, version: str, name: str) -> Path:
    if name not in FILES:
        raise not_found(f"Dataset file '{name}'")
    path = folder(data_dir, version) / name
    if not path.is_file():
        raise not_found(f"Dataset '{version}'")
    return path


def remove(data_dir: Path, version: str) -> None:
    target = folder(data_dir, version)
    if not target.is_dir():
        raise not_found(f"Dataset '{version}'")
    shutil.rmtree(target)

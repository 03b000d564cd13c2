"""Stand-ins for the deploy tests that need no training venv: a registry script in place of
tools/train/registry.py (run by the gateway as a real subprocess), and a desired-state
source the reconciler reads (``finetune/desired.py``'s protocol)."""

from __future__ import annotations

import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from chatgate.db.models import utcnow
from chatgate.finetune.deploy import parse_model_id
from chatgate.finetune.desired import Desired
from chatgate.finetune.split import Split

# resolve NAME REF: version REF (champion: 4), files under the data dir; "9": no such
# version. rollback NAME: champion back to 3; a name ending in "-solo" has none before.
FAKE_REGISTRY = """
import json, sys
args = sys.argv[1:]
root = args[args.index("--data-dir") + 1]
command, rest = args[args.index("--data-dir") + 2], args[args.index("--data-dir") + 3:]
if command == "resolve":
    name, ref = rest
    if ref == "9":
        print(json.dumps({"error": f"no version '9' of the registered model '{name}'"}))
        sys.exit(1)
    version = 4 if ref == "champion" else int(ref)
    where = f"{root}/adapters/{name}/{version}"
    print(json.dumps({"name": name, "version": version, "gguf": where + "/adapter.gguf",
                      "adapter_dir": where + "/adapter", "aliases": []}))
else:
    name = rest[0]
    if name.endswith("-solo"):
        print(json.dumps({"error": f"'{name}' has no version before 1 to roll back to"}))
        sys.exit(1)
    print(json.dumps({"name": name, "version": 3, "from": 4}))
"""


def fake_trainer(tmp_path: Path) -> dict[str, Any]:
    """Settings that make the gateway run FAKE_REGISTRY as its registry tool."""
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    (tools / "finetune.py").write_text("")
    (tools / "registry.py").write_text(FAKE_REGISTRY)
    return {"train_python": sys.executable, "train_script": tools / "finetune.py"}


def wanted(model_id: str, error: str | None = None) -> Desired:
    ref = parse_model_id(model_id)
    assert ref is not None
    return Desired(
        model_id, ref.base, ref.name, int(ref.ref), f"{ref.base}-{ref.name}",
        uuid.uuid4().hex, utcnow(), None, error,
    )  # fmt: skip


class FakeSource:
    """The desired state as a test sets it; failures recorded as the database would."""

    def __init__(self, *rows: Desired) -> None:
        self.rows = list(rows)
        self.splits: dict[str, Split] = {}
        self.failures: list[tuple[str, str, str]] = []

    async def load(self) -> tuple[list[Desired], dict[str, Split]]:
        return list(self.rows), dict(self.splits)

    async def fail(self, model_id: str, request_id: str, error: str) -> None:
        self.failures.append((model_id, request_id, error))
        self.rows = [
            replace(r, error=error) if (r.model_id, r.request_id) == (model_id, request_id) else r
            for r in self.rows
        ]

"""The seed's JSON training log (``logs/training/<job>.jsonl``), one object a line:
``{"timestamp", "level", "message", "epoch", "step", "loss", "learning_rate", ...}``.

The gateway's supervisor follows this file for a job's progress (chatgate/finetune/), and
Loki/Grafana can read it as the seed lays out. A short human line goes to stdout too.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO


class JobLog:
    def __init__(self, path: Path, job: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.job = job
        self._handle: TextIO = path.open("a", encoding="utf-8")

    def write(self, message: str, level: str = "INFO", **fields: Any) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        line = {
            "timestamp": now.replace("+00:00", "Z"),
            "level": level,
            "message": message,
            "job": self.job,
            **fields,
        }
        self._handle.write(json.dumps(line) + "\n")
        self._handle.flush()  # the supervisor reads it while the job runs
        print(f"[train] {human(message, fields)}", file=sys.stdout, flush=True)

    def close(self) -> None:
        self._handle.close()


def human(message: str, fields: dict[str, Any]) -> str:
    if message == "training_step":
        return (
            f"step {fields['step']}/{fields['total_steps']} epoch {fields['epoch']} "
            f"loss {fields['loss']:.4f} lr {fields['learning_rate']:.2e} "
            f"{fields['tokens_per_second']:.0f} tok/s rss {fields['rss_bytes'] / 2**20:.0f} MiB"
        )
    details = " ".join(f"{k}={v}" for k, v in fields.items() if not isinstance(v, (dict, list)))
    return f"{message} {details}".strip()

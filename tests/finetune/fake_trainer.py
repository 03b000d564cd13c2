"""A stand-in for tools/train/finetune.py with the same command line and JSON log lines,
for the supervisor's deterministic edge cases. FAKE_TRAINER_MODE picks the behaviour:

- ok: three steps, then training_finished (a registered version), exit 0
- hold: two steps, then waits; SIGTERM -> training_cancelled, exit 143
- stubborn: two steps, then waits and ignores SIGTERM (the supervisor must SIGKILL)
- fail: one step, then training_failed, exit 1
- crash: a traceback on stdout, no JSON line, exit 3
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("--dataset", "--base", "--epochs", "--lr", "--rank", "--batch-size"):
        p.add_argument(name)
    p.add_argument("--threads")
    p.add_argument("--max-steps")
    p.add_argument("--name")
    p.add_argument("--job", required=True)
    p.add_argument("--data-dir", required=True)
    args = p.parse_args()
    mode = os.environ.get("FAKE_TRAINER_MODE", "ok")
    path = Path(args.data_dir) / "logs" / "training" / f"{args.job}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a", encoding="utf-8")

    def write(message: str, **fields: Any) -> None:
        line = {"timestamp": "2026-12-07T00:00:00Z", "level": "INFO", "message": message}
        handle.write(json.dumps({**line, "job": args.job, **fields}) + "\n")
        handle.flush()

    if mode == "crash":
        print("Traceback (most recent call last):\nRuntimeError: fake crash", flush=True)
        return 3
    total = 3 if mode == "ok" else 2
    write(
        "training_started",
        total_steps=total,
        dataset_sha256="ab" * 32,
        mlflow_run_id="run-1",
        argv=sys.argv[1:],
    )
    steps = 1 if mode == "fail" else total
    for step in range(1, steps + 1):
        write(
            "training_step",
            epoch=1,
            step=step,
            total_steps=total,
            loss=3.0 - step / 2,
            learning_rate=1e-4,
            tokens_per_second=100.0 + step,
            rss_bytes=10_000_000,
        )
    if mode == "fail":
        write("training_failed", level="ERROR", error="ValueError: fake failure")
        return 1
    if mode == "ok":
        write(
            "training_finished",
            model_name="smollm2-135m-fake",
            model_version="7",
            mlflow_run_id="run-1",
            gguf_lora="/tmp/fake/adapter.gguf",
        )
        return 0
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:

        def cancelled(_signum: int, _frame: object) -> None:
            write("training_cancelled")
            os._exit(143)

        signal.signal(signal.SIGTERM, cancelled)
    threading.Event().wait()  # until a signal ends the process
    return 0


if __name__ == "__main__":
    sys.exit(main())

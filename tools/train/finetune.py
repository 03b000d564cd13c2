"""LoRA fine-tuning of a chat JSONL dataset, tracked in MLflow, ending as a GGUF LoRA.

    .venv-train/bin/python tools/train/finetune.py --dataset chats.jsonl --base smollm2-135m \
        [--epochs 2 --lr 2e-4 --rank 16 --max-steps N --output DIR]

Steps: tokenize with the base's chat template (loss on assistant tokens only), train the
adapter (seeded: the same inputs give the same run), save it (PEFT), convert it to a GGUF
LoRA for llama-server, log params/metrics/artifacts to MLflow and register a version of
``<base>-<dataset>`` with the alias ``challenger``. Progress: the seed's JSON lines in
``<data dir>/logs/training/<job>.jsonl`` (read by the gateway's supervisor) and stdout.
SIGTERM cancels: the run ends KILLED, nothing is registered, exit status 143.
Runs in .venv-train only (torch, transformers, peft, mlflow); the gateway never imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import chatdata  # noqa: E402
import gguf_lora  # noqa: E402
import modelload  # noqa: E402
from joblog import JobLog  # noqa: E402
from tracking import Tracker, store  # noqa: E402

EXIT_CANCELLED = 143


class Cancelled(Exception):
    """SIGTERM arrived: the job was cancelled."""


def _cancel(_signum: int, _frame: FrameType | None) -> None:
    raise Cancelled


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path, required=True, help="chat JSONL ({'messages': [...]})")
    p.add_argument("--base", default="smollm2-135m", help="known base name or HF directory")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=512, help="tokens kept per conversation")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument(
        "--quantize",
        choices=["auto", "4bit", "none"],
        default="auto",
        help="auto: QLoRA (bitsandbytes 4-bit) when CUDA is present",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="auto: bf16 autocast where CUDA or the CPU does bf16 natively, else fp32",
    )
    p.add_argument("--name", default=None, help="dataset name in the registered model's name")
    p.add_argument("--job", default=None, help="job id (log file name); default: a timestamp")
    p.add_argument("--data-dir", type=Path, default=None, help="default: CHATGATE_DATA_DIR")
    p.add_argument("--output", type=Path, default=None, help="default: <data dir>/finetune/<job>")
    args = p.parse_args(argv)
    for name in ("epochs", "rank", "batch_size", "max_tokens", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_steps is not None and args.max_steps < 1:
        p.error("--max-steps must be at least 1")
    if not args.lr > 0:
        p.error("--lr must be positive")
    return args


def data_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    env = os.environ.get("CHATGATE_DATA_DIR")
    return Path(env) if env else Path.home() / ".local" / "share" / "chatgate"


def dataset_name(args: argparse.Namespace) -> str:
    if args.name:
        return modelload.slug(args.name)
    path: Path = args.dataset
    stem = path.stem
    return modelload.slug(path.parent.name if stem in {"train", "data", "dataset"} else stem)


def seed_everything(seed: int, threads: int) -> Any:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    return torch


def run(args: argparse.Namespace, log: JobLog, out: Path, root: Path) -> dict[str, Any]:
    torch = seed_everything(args.seed, args.threads)
    import peft
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    base = modelload.resolve_base(args.base)
    tokenizer = transformers.AutoTokenizer.from_pretrained(base.path)
    chats = chatdata.read_chats(args.dataset)
    examples = [chatdata.encode(tokenizer, chat, args.max_tokens) for chat in chats]
    examples = [e for e in examples if e.trained_tokens > 0]
    if not examples:
        raise SystemExit(f"{args.dataset}: no assistant tokens left within --max-tokens")
    digest = chatdata.file_sha256(args.dataset)
    cuda = torch.cuda.is_available()
    autocast = modelload.bf16_autocast(args.precision, cuda, modelload.cpu_flags())
    how = modelload.plan(args.quantize, cuda, modelload.has_bitsandbytes(), autocast)
    model = modelload.load_model(
        base, how, args.rank, torch=torch, transformers=transformers, peft=peft
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    from loop import Schedule

    schedule = Schedule(args.epochs, args.batch_size, args.max_steps, args.lr, args.seed)
    name = f"{base.name}-{dataset_name(args)}"
    params = {
        "base": base.name,
        "base_path": base.path,
        "dataset": args.dataset,
        "dataset_sha256": digest,
        "examples": len(examples),
        "epochs": args.epochs,
        "lr": args.lr,
        "rank": args.rank,
        "lora_alpha": 2 * args.rank,
        "batch_size": args.batch_size,
        "max_steps": args.max_steps,
        "max_tokens": args.max_tokens,
        "seed": args.seed,
        "method": how.method,
        "device": how.device,
        "precision": "bf16" if how.autocast_bf16 else "fp32",  # what "auto" chose
        "trainable_params": trainable,
        "total_steps": schedule.total_steps(len(examples)),
    }
    tracker = Tracker(store(root))
    run_id = tracker.start(
        log.job, params, {"chatgate.job": log.job, "dataset_sha256": digest, "model_name": name}
    )
    plain = {k: str(v) if isinstance(v, Path) else v for k, v in params.items()}
    log.write("training_started", **plain, mlflow_run_id=run_id)
    try:
        result = _train_and_publish(
            model, examples, schedule, how, tokenizer, base, out, log, tracker, name
        )
    except BaseException:
        tracker.end("KILLED" if sys.exc_info()[0] is Cancelled else "FAILED")
        raise
    tracker.end("FINISHED")
    return {**result, "mlflow_run_id": run_id, "dataset_sha256": digest}


def _train_and_publish(
    model: Any,
    examples: list[chatdata.Example],
    schedule: Any,
    how: modelload.Plan,
    tokenizer: Any,
    base: modelload.Base,
    out: Path,
    log: JobLog,
    tracker: Tracker,
    name: str,
) -> dict[str, Any]:
    from loop import train

    def on_step(fields: dict[str, Any]) -> None:
        log.write("training_step", **fields)
        keys = ("loss", "learning_rate", "tokens_per_second", "step_seconds")
        tracker.step(fields["step"], {k: float(fields[k]) for k in keys})

    started = time.monotonic()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    last_loss = train(
        model,
        examples,
        schedule,
        device=how.device,
        autocast_bf16=how.autocast_bf16,
        pad_id=pad_id,
        on_step=on_step,
    )
    train_seconds = time.monotonic() - started
    adapter = out / "adapter"
    model.save_pretrained(adapter)
    gguf = gguf_lora.convert(adapter, base.path, out / "adapter.gguf")
    tracker.artifacts(adapter, "adapter")
    tracker.artifacts(gguf, "gguf")
    tracker.artifacts(log.path, "logs")
    version = tracker.register(name, f"LoRA on {base.name} (chatgate job {log.job})")
    return {
        "final_loss": last_loss,
        "train_seconds": round(train_seconds, 2),
        "adapter_dir": str(adapter),
        "gguf_lora": str(gguf),
        "model_name": name,
        "model_version": version,
        "alias": "challenger",
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = data_dir(args.data_dir)
    job = args.job or datetime.now(UTC).strftime("finetune_%Y%m%d_%H%M%S")
    out = args.output or root / "finetune" / job
    out.mkdir(parents=True, exist_ok=True)
    log = JobLog(root / "logs" / "training" / f"{job}.jsonl", job)
    signal.signal(signal.SIGTERM, _cancel)
    try:
        result = run(args, log, out, root)
    except Cancelled:
        log.write("training_cancelled", level="WARNING")
        return EXIT_CANCELLED
    except BaseException as exc:
        log.write("training_failed", level="ERROR", error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    log.write("training_finished", **result)
    log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The training loop: AdamW on the adapter's weights, linear warm-up then linear decay,
gradient clipping, bf16 autocast. One JSON log line and one MLflow metrics row per step.

A plain loop rather than transformers' Trainer: each step's numbers go straight to the
seed's log format, and SIGTERM (a cancelled job) stops between two steps' operations.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import torch
from chatdata import Example, batches, collate

StepHook = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Schedule:
    epochs: int
    batch_size: int
    max_steps: int | None
    lr: float
    seed: int

    def total_steps(self, examples: int) -> int:
        per_epoch = math.ceil(examples / self.batch_size)
        total = per_epoch * self.epochs
        return min(total, self.max_steps) if self.max_steps else total


def lr_factor(step: int, total: int) -> float:
    """Warm up over the first tenth (at most 10 steps), then decay linearly to zero."""
    warmup = min(10, total // 10)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, (total - step) / max(1, total - warmup))


def train(
    model: Any,
    examples: Sequence[Example],
    schedule: Schedule,
    *,
    device: str,
    autocast_bf16: bool,
    pad_id: int,
    on_step: StepHook,
) -> float:
    """Train in place; returns the last step's loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=schedule.lr, weight_decay=0.0)
    total = schedule.total_steps(len(examples))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total))
    process = psutil.Process()
    model.train()
    step, loss_value = 0, float("nan")
    for epoch in range(1, schedule.epochs + 1):
        for batch in batches(examples, schedule.batch_size, schedule.seed, epoch):
            if step >= total:
                return loss_value
            started = time.perf_counter()
            learning_rate = scheduler.get_last_lr()[0]
            ids, mask, labels = (torch.tensor(t, device=device) for t in collate(batch, pad_id))
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=autocast_bf16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = float(loss.detach())
            seconds = time.perf_counter() - started
            on_step(
                {
                    "epoch": epoch,
                    "step": step,
                    "total_steps": total,
                    "loss": round(loss_value, 6),
                    "learning_rate": learning_rate,
                    "tokens_per_second": round(int(mask.sum()) / seconds, 1),
                    "step_seconds": round(seconds, 3),
                    "rss_bytes": process.memory_info().rss,
                }
            )
    return loss_value

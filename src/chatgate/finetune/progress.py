"""A job's progress, read from the trainer's JSON log lines (``logs/training/<job>.jsonl``).

The trainer writes the seed's format, one object a line: ``training_started`` (parameters,
dataset hash, MLflow run), ``training_step`` (epoch, step, loss, learning_rate,
tokens_per_second, rss_bytes), then ``training_finished`` (registered model version,
GGUF LoRA), ``training_failed`` (error) or ``training_cancelled``. The file is followed
by offset: only complete lines are read, a line still being written waits for the next read.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("chatgate.finetune")

# The loss curve kept per job (in its row): past this many points every other one is
# dropped, so a long job's curve keeps its shape in bounded space.
MAX_CURVE_POINTS = 1000


@dataclass
class Progress:
    step: int = 0
    total_steps: int | None = None
    epoch: int | None = None
    loss: float | None = None
    learning_rate: float | None = None
    tokens_per_second: float | None = None
    rss_bytes: int | None = None
    curve: list[list[float]] = field(default_factory=list)
    started: dict[str, Any] | None = None
    finished: dict[str, Any] | None = None
    error: str | None = None
    cancelled: bool = False
    new_steps: int = 0  # steps applied since the last take_new_steps()

    def apply(self, line: dict[str, Any]) -> None:
        message = line.get("message")
        if message == "training_step":
            self._step(line)
        elif message == "training_started":
            self.started = line
            self.total_steps = _int(line.get("total_steps"), self.total_steps)
        elif message == "training_finished":
            self.finished = line
        elif message == "training_failed":
            self.error = str(line.get("error") or "training failed")
        elif message == "training_cancelled":
            self.cancelled = True

    def _step(self, line: dict[str, Any]) -> None:
        step = _int(line.get("step"), None)
        loss = _float(line.get("loss"))
        if step is None or step <= self.step:
            return  # a repeated or out-of-order line changes nothing
        self.new_steps += step - self.step
        self.step = step
        self.total_steps = _int(line.get("total_steps"), self.total_steps)
        self.epoch = _int(line.get("epoch"), self.epoch)
        self.loss = loss
        self.learning_rate = _float(line.get("learning_rate"))
        self.tokens_per_second = _float(line.get("tokens_per_second"))
        self.rss_bytes = _int(line.get("rss_bytes"), self.rss_bytes)
        if loss is not None:
            self.curve.append([step, loss])
            if len(self.curve) > MAX_CURVE_POINTS:
                self.curve = self.curve[:-1:2] + [self.curve[-1]]

    def take_new_steps(self) -> int:
        steps, self.new_steps = self.new_steps, 0
        return steps


def _int(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


class LogFollower:
    """New complete JSON lines of a file that another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []
        self._offset += end + 1
        lines = []
        for raw in chunk[: end + 1].splitlines():
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                log.warning("not a JSON line in %s: %.200r", self.path, raw)
                continue
            if isinstance(value, dict):
                lines.append(value)
        return lines

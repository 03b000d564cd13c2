"""The trainer's JSON log lines -> a job's progress (supervisor's reader)."""

from __future__ import annotations

import json
from pathlib import Path

from chatgate.finetune.progress import MAX_CURVE_POINTS, LogFollower, Progress


def step_line(step: int, loss: float = 1.5, **extra: object) -> dict[str, object]:
    return {
        "message": "training_step",
        "epoch": 1,
        "step": step,
        "total_steps": 10,
        "loss": loss,
        "learning_rate": 1e-4,
        "tokens_per_second": 50.0,
        "rss_bytes": 123,
        **extra,
    }


def test_steps_fill_progress_and_curve() -> None:
    progress = Progress()
    progress.apply({"message": "training_started", "total_steps": 10, "mlflow_run_id": "r"})
    progress.apply(step_line(1, 2.0))
    progress.apply(step_line(2, 1.0))
    assert (progress.step, progress.total_steps, progress.epoch) == (2, 10, 1)
    assert progress.loss == 1.0 and progress.learning_rate == 1e-4
    assert progress.curve == [[1, 2.0], [2, 1.0]]
    assert progress.take_new_steps() == 2
    assert progress.take_new_steps() == 0


def test_repeated_or_malformed_steps_change_nothing() -> None:
    progress = Progress()
    progress.apply(step_line(3))
    progress.apply(step_line(2, 0.1))  # out of order
    progress.apply(step_line(3, 0.1))  # repeated
    progress.apply({"message": "training_step", "step": "4", "loss": 1})  # not an integer
    progress.apply({"message": "training_step", "step": True, "loss": 1})
    assert progress.step == 3 and progress.loss == 1.5 and len(progress.curve) == 1


def test_end_lines() -> None:
    progress = Progress()
    progress.apply({"message": "training_failed", "error": "boom"})
    progress.apply({"message": "training_cancelled"})
    progress.apply({"message": "training_finished", "model_version": "2"})
    assert progress.error == "boom" and progress.cancelled
    assert progress.finished == {"message": "training_finished", "model_version": "2"}


def test_long_curves_are_thinned_evenly() -> None:
    progress = Progress()
    for step in range(1, MAX_CURVE_POINTS * 3):
        progress.apply(step_line(step, loss=float(step)))
    assert len(progress.curve) <= MAX_CURVE_POINTS
    assert progress.curve[0] == [1, 1.0]
    assert progress.curve[-1][0] == MAX_CURVE_POINTS * 3 - 1  # the newest point stays
    steps = [int(point[0]) for point in progress.curve]
    assert steps == sorted(steps)


def test_follower_reads_only_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "job.jsonl"
    follower = LogFollower(path)
    assert follower.read() == []  # not written yet
    with path.open("w") as handle:
        handle.write(json.dumps(step_line(1)) + "\n" + '{"message": "training_st')
    assert [line["step"] for line in follower.read()] == [1]
    assert follower.read() == []
    with path.open("a") as handle:
        handle.write('ep", "step": 2, "loss": 1.0}\nnot json\n\n[1, 2]\n')
    lines = follower.read()
    assert lines == [{"message": "training_step", "step": 2, "loss": 1.0}]

"""The evaluation gate and promotion, run by ``tools/train/evaluate.py`` in ``.venv-train``.

Scoring a version needs torch, transformers, peft and MLflow, which the gateway never
imports: the gateway runs the script as a subprocess (the trainer's python, the script
beside the trainer's) and reads the JSON verdict it prints. Its exit status says the rest:
3 = promotion refused (the gate failed or never ran), 4 = no such registered version.
One evaluation or promotion of a given version at a time per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatgate.errors import APIError
from chatgate.finetune import command
from chatgate.settings import Settings

EVALUATE_TIMEOUT_SECONDS = 3600.0  # the full sets take ~2 min on 2 cores; far more under load
PROMOTE_TIMEOUT_SECONDS = 300.0
EXIT_REFUSED = 3
EXIT_NOT_FOUND = 4
STDERR_TAIL = 2000
VERSION_PATTERN = r"^[0-9]{1,9}$"

_busy: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class EvalOptions:
    """Limits for a quick evaluation (default: the whole held-out split and regression set)."""

    heldout_limit: int | None = None
    regression_limit: int | None = None
    max_new_tokens: int | None = None


def evaluate_script(settings: Settings) -> Path:
    return command.train_script(settings).parent / "evaluate.py"


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME@VERSION`` (``smollm2-135m-zanthia@3``) -> (name, version)."""
    name, sep, version = ref.rpartition("@")
    if not sep or not name or not version.isdigit():
        raise APIError(400, f"{ref!r}: expected NAME@VERSION", "invalid_value", param="model")
    return name, version


def evaluate_argv(settings: Settings, name: str, version: str, opts: EvalOptions) -> list[str]:
    args = _base_argv(settings, "evaluate", name, version)
    args += ["--threads", str(settings.train_threads)]
    for flag, value in (
        ("--heldout-limit", opts.heldout_limit),
        ("--regression-limit", opts.regression_limit),
        ("--max-new-tokens", opts.max_new_tokens),
    ):
        if value is not None:
            args += [flag, str(value)]
    return args


def promote_argv(settings: Settings, name: str, version: str, force: bool, by: str) -> list[str]:
    args = _base_argv(settings, "promote", name, version)
    return args + (["--force", "--by", by] if force else [])


def _base_argv(settings: Settings, action: str, name: str, version: str) -> list[str]:
    python, script = command.train_python(settings), evaluate_script(settings)
    return [str(python), str(script), action, "--model", name, "--version", version] + [
        "--data-dir",
        str(settings.data_dir),
    ]


async def evaluate(
    settings: Settings, name: str, version: str, opts: EvalOptions | None = None
) -> dict[str, Any]:
    """Score the version against its base; the verdict (``gate``: passed|failed, reasons,
    scores, leaks) as the script printed it."""
    argv = evaluate_argv(settings, name, version, opts or EvalOptions())
    return await _run(settings, (name, version), argv, EVALUATE_TIMEOUT_SECONDS)


async def promote(
    settings: Settings, name: str, version: str, force: bool, by: str
) -> dict[str, Any]:
    """Move ``champion`` to the version (409 ``gate_failed`` unless it passed or ``force``)."""
    argv = promote_argv(settings, name, version, force, by)
    return await _run(settings, (name, version), argv, PROMOTE_TIMEOUT_SECONDS)


async def _run(
    settings: Settings, key: tuple[str, str], argv: list[str], timeout: float
) -> dict[str, Any]:
    if key in _busy:
        raise APIError(409, f"{key[0]}@{key[1]} is being evaluated or promoted", "gate_busy")
    command.check_trainer(settings)
    _busy.add(key)
    try:
        code, out, err = await spawn(argv, command.environment(settings), timeout)
    finally:
        _busy.discard(key)
    return _interpret(code, out, err)


async def spawn(
    argv: list[str],
    env: dict[str, str],
    timeout: float,
    what: tuple[str, str] = ("the evaluator", "evaluation_timeout"),
) -> tuple[int, str, str]:
    """Run a tools/train script to its end: (exit status, stdout, stderr). ``what`` names it
    in the errors (503 when it cannot start, 504 with ``what[1]`` past ``timeout``); a
    timeout or a cancelled request kills its whole process group."""
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own group: a timeout or a gone client stops it all
        )
    except OSError as exc:
        raise APIError(503, f"{what[0]} did not start: {exc}", "training_unavailable") from exc
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError as exc:
        raise APIError(504, f"{what[0]} took over {timeout:.0f} s", what[1]) from exc
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    code = process.returncode if process.returncode is not None else -1
    return code, out.decode(errors="replace"), err.decode(errors="replace")


def _interpret(code: int, out: str, err: str) -> dict[str, Any]:
    lines = out.strip().splitlines()
    try:
        result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if code == EXIT_NOT_FOUND:
        raise APIError(404, str(result.get("error", "no such version")), "model_not_found")
    if code == EXIT_REFUSED:
        raise APIError(409, f"promotion refused: {result.get('reason')}", "gate_failed")
    if code != 0 or not isinstance(result, dict) or not result:
        tail = err.strip()[-STDERR_TAIL:] or out.strip()[-STDERR_TAIL:]
        raise APIError(502, f"the evaluator failed (exit {code}): {tail}", "evaluation_failed")
    return result

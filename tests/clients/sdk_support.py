"""What the SDK scripts (``openai_client.py``, ``langchain_client.py``) share. They run in
``.venv-clients``, not the gateway's venv, so this module imports nothing of chatgate.

Each script runs many named checks in one process (one interpreter start, one SDK import)
and reports every check on its own: a failing check is recorded with its traceback and the
others still run, so the test that reads the report names each failure separately.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Report = dict[str, Any]
Kind = Literal["sync", "async"]


@dataclass
class Context:
    """What a check needs: the client of one kind (sync or async) and the run's options."""

    client: Any
    kind: Kind
    base_url: str
    api_key: str
    model: str
    strict: bool  # the fake engine: its answers are known exactly
    extra: dict[str, str]  # further KEY=VALUE arguments (a second user's key, ...)
    memo: dict[str, Any] = field(default_factory=dict)  # what one check leaves the next


Check = Callable[[Context], Awaitable[Report]]


async def resolve(value: Any) -> Any:
    """The sync client returns results, the async client awaitables: one check serves both."""
    if inspect.isawaitable(value):
        return await value
    return value


async def drain(stream: Any) -> list[Any]:
    """Every item of a sync or an async stream (reading to its end closes it)."""
    stream = await resolve(stream)
    if hasattr(stream, "__aiter__"):
        return [item async for item in stream]
    return list(stream)


async def run_checks(checks: dict[str, Check], context: Context) -> dict[str, Report]:
    """Each check's report, ``ok`` false with the error where it raised."""
    results: dict[str, Report] = {}
    for name, check in checks.items():
        started = time.monotonic()
        try:
            results[name] = {"ok": True, **await check(context)}
        except Exception as exc:  # recorded for the test to show, the others go on
            results[name] = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "trace": traceback.format_exc()[-4000:],
            }
        results[name]["seconds"] = round(time.monotonic() - started, 2)  # for the log
        print(f"{context.kind} {name}: {results[name]['ok']} {results[name]['seconds']} s",
              file=sys.stderr, flush=True)  # fmt: skip
    return results


@dataclass
class Arguments:
    base_url: str
    api_key: str
    model: str
    strict: bool
    only: list[str]  # check names to run; empty: all
    extra: dict[str, str]


def parse_arguments(argv: list[str]) -> Arguments:
    """``BASE_URL API_KEY MODEL strict|loose [CHECK ...] [KEY=VALUE ...]``."""
    base_url, api_key, model, mode, *rest = argv
    extra = dict(item.split("=", 1) for item in rest if "=" in item)
    only = [item for item in rest if "=" not in item]
    return Arguments(base_url, api_key, model, mode == "strict", only, extra)


def select(checks: dict[str, Check], only: list[str]) -> dict[str, Check]:
    unknown = set(only) - set(checks)
    if unknown:
        raise SystemExit(f"unknown checks: {sorted(unknown)}")
    return {name: check for name, check in checks.items() if not only or name in only}


def emit(report: Report) -> None:
    """The report, as the last line of stdout (the test reads that line)."""
    sys.stdout.write(json.dumps(report) + "\n")
    sys.stdout.flush()


def weather_question(strict: bool) -> str:
    """A question for the weather tool (the fake engine calls a tool only when told to)."""
    return "What is the weather in Paris?" + (" [[tool_call=get_weather]]" if strict else "")

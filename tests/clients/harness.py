"""The gateway side of the client-compatibility tests: each SDK script runs in its own
process from ``.venv-clients`` (``make clients-env``; its pins must not move the gateway's)
and prints one JSON report, which the tests read check by check.

One real ``chatgate serve`` with the embedded llama.cpp engine serves every module of this
directory (``conftest.py``): starting the engine once keeps the suite bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from chatgate.engines.runtime.embedded import (
    EngineSetupError,
    locate_llama_server,
    locate_smollm2_gguf,
)
from tests.e2e.harness import Served, serve_env
from tests.helpers import free_port, missing

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
HERE = Path(__file__).parent
CLIENT_TIMEOUT = 420  # seconds for one script, every check, on a loaded 2-core machine


async def run_client(script: str, *args: str) -> dict[str, Any]:
    """The report of ``script`` (a file of this directory) run with ``args``
    (asynchronously: an in-process gateway runs in this loop)."""
    if not CLIENTS_PYTHON.exists():
        missing(f"{CLIENTS_PYTHON} is missing (make clients-env installs the client SDKs)")
    process = await asyncio.create_subprocess_exec(
        str(CLIENTS_PYTHON), str(HERE / script), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), CLIENT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()[-4000:]
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


def check_passed(report: dict[str, Any], kind: str, check: str) -> dict[str, Any]:
    """One check's report; a failure shows the SDK's error and where it was raised."""
    seen: dict[str, Any] = report[kind][check]
    if not seen["ok"]:
        pytest.fail(f"{kind} {check}: {seen['error']}\n{seen['trace']}", pytrace=False)
    return seen


@contextmanager
def embedded_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``chatgate serve`` with its embedded engine (skipped where the model or the
    llama-server build is absent; CI=true makes that a failure)."""
    try:
        locate_smollm2_gguf()
        locate_llama_server()
    except EngineSetupError as exc:
        missing(str(exc))
    data_dir = tmp_path_factory.mktemp("clients-e2e")
    port = free_port()
    instance = Served(data_dir, port, serve_env(data_dir, port, None))
    try:
        instance.start()  # a start that fails leaves its process to stop, too
        yield instance
    finally:
        instance.stop()


def new_key(served: Served, user: str, name: str) -> str:
    """An API key of ``user`` (created, as a plain user, unless it is the admin)."""
    if user != "admin":
        served.cli("users", "add", user, "--password", "client-tests-password")
    return served.cli("keys", "create", "--user", user, "--name", name).split()[-1]

"""A trial run of the installed llama-server: which CPU variant it loads, and one token.

``chatgate doctor`` and the test suite use it: a build is proven by a real generation on
this machine, not by a listing endpoint. The trial starts its own small server (one slot,
a 512-token context) on a free loopback port and stops it again.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from chatgate.engines.runtime.embedded import LlamaServerOptions, llama_server_command
from chatgate.engines.runtime.liveness import EngineProbe
from chatgate.engines.runtime.process import describe_exit, pick_free_port

HOST = "127.0.0.1"
ALIAS = "trial"
_VARIANT = re.compile(r"loaded CPU backend from (\S+)")
_SYSTEM_INFO = re.compile(r"system_info: .*?(CPU : .*)$", re.M)


@dataclass(frozen=True)
class TrialResult:
    ok: bool
    error: str | None  # why not, with the exit status when it crashed
    variant: str | None  # e.g. "haswell": the libggml-cpu-<variant>.so llama.cpp loaded
    cpu_features: str | None  # llama.cpp's own "CPU : SSE3 = 1 | …" line
    seconds: float  # from start to the generated token
    log_tail: str


def variant_of(log: str) -> str | None:
    match = _VARIANT.search(log)
    if match is None:
        return None
    name = Path(match.group(1)).name  # libggml-cpu-haswell.so
    return name.removeprefix("libggml-cpu-").split(".so")[0]


def system_info_of(log: str) -> str | None:
    match = _SYSTEM_INFO.search(log)
    return match.group(1).strip() if match else None


def run_trial(server: Path, model: Path, timeout: float = 120.0) -> TrialResult:
    """Start llama-server, wait until it is up, generate one token, stop it."""
    port = pick_free_port(HOST)
    options = LlamaServerOptions(threads=2, parallel=1, ctx_per_slot=512, kv_tokens=512,
                                 cache_ram_mb=0)  # fmt: skip
    argv = llama_server_command(server, model, HOST, port, alias=ALIAS, options=options)
    argv += ["--log-verbosity", "4"]  # the backend it loaded and its CPU features (debug level)
    started = time.monotonic()
    with tempfile.TemporaryFile() as log_file:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            error = _generate_once(process, f"http://{HOST}:{port}", started + timeout)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        seconds = time.monotonic() - started
        log_file.seek(0)
        log = log_file.read().decode(errors="replace")
    tail = "\n".join(line for line in log.splitlines()[-12:] if line.strip())
    return TrialResult(error is None, error, variant_of(log), system_info_of(log), seconds, tail)


def _generate_once(process: subprocess.Popen[bytes], root: str, deadline: float) -> str | None:
    probe = EngineProbe(ALIAS)
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"llama-server {describe_exit(process.returncode)} while starting"
        if probe.healthy(root, 1.0):
            error = probe.generate(root, max(1.0, deadline - time.monotonic()))
            if error is not None:
                try:  # a crash closes the connection a moment before the exit is seen
                    process.wait(2)
                except subprocess.TimeoutExpired:
                    return error
                return f"llama-server {describe_exit(process.returncode)} during its first token"
            return None
        time.sleep(0.2)
    return "llama-server did not come up in time"

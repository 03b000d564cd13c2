"""The embedded llama.cpp engine: command line, model lookup and one real chat completion."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from chatgate.engines.embedded import (
    EMBEDDED_ENGINE_NAME,
    SMOLLM2_INSTALL,
    EngineSetupError,
    check_llamacpp_server,
    embedded_supervisor,
    llamacpp_command,
    locate_smollm2_gguf,
)
from chatgate.engines.process import read_log_tail


def running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_dependency(reason: str) -> None:
    """Skip locally, but in CI a missing embedded-engine dependency is a failure."""
    if running_in_ci():
        pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)")
    pytest.skip(reason)


def require_smollm2() -> Path:
    try:
        return locate_smollm2_gguf()
    except EngineSetupError as exc:
        missing_dependency(str(exc))
        raise


def require_llamacpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        missing_dependency("llama-cpp-python is not installed")


def test_llamacpp_command_line_shape() -> None:
    command = llamacpp_command(
        "/venv/bin/python",
        Path("/models/m.gguf"),
        "127.0.0.1",
        8123,
        alias="smollm2-135m",
        threads=3,
        n_ctx=4096,
    )
    assert command == [
        "/venv/bin/python", "-m", "llama_cpp.server",
        "--model", "/models/m.gguf",
        "--model_alias", "smollm2-135m",
        "--host", "127.0.0.1",
        "--port", "8123",
        "--n_threads", "3",
        "--n_threads_batch", "3",
        "--interrupt_requests", "false",
        "--n_ctx", "4096",
    ]  # fmt: skip


def test_installed_llamacpp_server_accepts_every_option() -> None:
    require_llamacpp()
    command = llamacpp_command(
        sys.executable, Path("m.gguf"), "127.0.0.1", 1, alias="a", threads=1, n_ctx=1
    )
    options = [arg for arg in command if arg.startswith("--")]

    result = subprocess.run(
        [sys.executable, "-m", "llama_cpp.server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert [opt for opt in options if f"{opt} " not in result.stdout] == []


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


def test_check_llamacpp_server_accepts_this_python() -> None:
    require_llamacpp()
    check_llamacpp_server(sys.executable)


def test_check_llamacpp_server_rejects_a_missing_python(tmp_path: Path) -> None:
    with pytest.raises(EngineSetupError, match="Cannot run the engine Python"):
        check_llamacpp_server(str(tmp_path / "no-python"))


def post_json(url: str, payload: dict[str, Any], timeout: float) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=timeout) as response:
        return json.loads(response.read())


@pytest.mark.e2e
def test_real_llamacpp_engine_answers_a_chat_completion(tmp_path: Path) -> None:
    model_path = require_smollm2()
    require_llamacpp()
    supervisor = embedded_supervisor(
        python=sys.executable,
        model_path=model_path,
        threads=2,
        n_ctx=2048,
        run_dir=tmp_path / "run",
        log_dir=tmp_path / "logs",
    )
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
    finally:
        supervisor.stop()
    assert supervisor.status().state == "stopped"

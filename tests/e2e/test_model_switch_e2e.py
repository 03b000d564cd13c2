"""End to end: switching the active model of a real `chatgate serve` through the admin API.

Two llama.cpp profiles (the embedded SmolLM2 and an admin-added copy of it) keep this
fast; tests/e2e/test_vllm_switch_e2e.py does the same with real vLLM.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chatgate.engines.runtime.embedded import locate_smollm2_gguf
from tests.e2e.harness import ENGINE_NAME, Served, serve_env
from tests.e2e.switching import admin_headers, chat_text, switch_and_wait
from tests.helpers import free_port

pytestmark = pytest.mark.e2e

COPY = "smollm2-copy"


def write_profiles(directory: Path) -> None:
    directory.mkdir()
    common = (
        "engine: llamacpp\nparams_b: 0.135\nquantization: q4_1\nnum_layers: 30\n"
        "num_kv_heads: 3\nhead_dim: 64\ncontext_length: 8192\nmax_model_len: 1024\n"
        "engine_args:\n  n_threads: 1\n"
    )
    (directory / f"{COPY}.yaml").write_text(
        f"id: {COPY}\nname: SmolLM2 copy\naliases: [copy]\npath: {locate_smollm2_gguf()}\n" + common
    )
    broken = directory / "not-a-model.gguf"
    broken.write_bytes(b"this is not a GGUF file")
    (directory / "broken.yaml").write_text(f"id: broken\nname: Broken\npath: {broken}\n" + common)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("switch")
    write_profiles(data_dir / "profiles")
    port = free_port()
    env = serve_env(data_dir, port, None)
    env["CHATGATE_PROFILES_DIR"] = str(data_dir / "profiles")
    env["CHATGATE_EMBEDDED_CTX"] = "1024"
    instance = Served(data_dir, port, env)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def admin_models(served: Served) -> dict[str, dict[str, object]]:
    body = httpx.get(
        f"{served.url}/api/admin/models", headers=admin_headers(served), timeout=60
    ).json()
    assert isinstance(body, dict)
    return {m["id"]: m for m in body["models"]} | {"_": body}


def test_the_embedded_engine_is_the_managed_active_model(served: Served) -> None:
    models = admin_models(served)
    embedded = models[ENGINE_NAME]
    assert embedded["active"] and embedded["state"] == "ready"
    assert embedded["endpoints"][0]["kind"] == "managed"  # type: ignore[index]
    assert models[COPY]["state"] == "not_running" and models[COPY]["has_profile"]


def test_switch_serves_the_new_profile_and_survives_a_restart(served: Served) -> None:
    status = switch_and_wait(served, COPY)
    assert status["phase"] == "ready", status
    log = " ".join(line["message"] for line in status["log"])
    for step in (f"{ENGINE_NAME} drained", f"{ENGINE_NAME} stopped", f"starting {COPY}"):
        assert step in log
    text, usage = chat_text(served, COPY)
    assert text and usage["completion_tokens"] > 0
    gone = httpx.post(
        served.url + "/v1/chat/completions",
        json={"model": ENGINE_NAME, "messages": [{"role": "user", "content": "hi"}]},
        headers=admin_headers(served),
        timeout=60,
    )
    assert gone.status_code == 404
    engines = httpx.get(
        f"{served.url}/api/admin/engines", headers=admin_headers(served), timeout=60
    ).json()
    (engine,) = engines["engines"]
    assert engine["model_id"] == COPY and engine["kind"] == "managed"
    assert engine["state"] == "ready" and engine["pid"]

    served.stop()
    served.start()  # `serve` starts the profile that was active, not the embedded one
    models = admin_models(served)
    assert models[COPY]["active"] and models[COPY]["state"] == "ready"
    assert not models[ENGINE_NAME]["registered"]
    assert chat_text(served, "copy")[0]  # by alias


def test_a_profile_that_cannot_start_rolls_back(served: Served) -> None:
    status = switch_and_wait(served, "broken", timeout=180)
    assert status["phase"] == "rolled_back", status
    assert "did not become ready" in " ".join(line["message"] for line in status["log"])
    models = admin_models(served)
    assert models[COPY]["active"] and models[COPY]["state"] == "ready"
    assert chat_text(served, COPY)[0]


def test_switch_back_to_the_embedded_engine(served: Served) -> None:
    status = switch_and_wait(served, ENGINE_NAME)
    assert status["phase"] == "ready"
    assert chat_text(served, "default")[0]

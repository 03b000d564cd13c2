"""End to end: a real `chatgate serve` switches from the embedded llama.cpp engine to a
real vLLM engine it starts itself, and back, through the admin API.

The vLLM profile points at a copy of the converted SmolLM2 without its chat template,
so the answer also proves the profile's template was applied (vLLM refuses chat
requests for a model without one).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from chatgate.engines.catalog.profiles import load_profiles
from chatgate.engines.runtime.launch import model_has_chat_template
from tests.e2e.harness import ENGINE_NAME, Served, serve_env
from tests.e2e.switching import admin_headers, chat_text, switch_and_wait
from tests.e2e.vllm_support import smollm2_hf_dir, vllm_python
from tests.helpers import free_port, parse_sse, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

VLLM_PROFILE = "smollm2-135m-vllm"


def model_without_template(source: Path, target: Path) -> Path:
    """The converted model's files, minus its chat template (weights linked, not copied)."""
    target.mkdir()
    for item in source.iterdir():
        if item.name == "chat_template.jinja":
            continue
        (target / item.name).symlink_to(item)
    assert not model_has_chat_template(target)
    return target


def write_vllm_profile(directory: Path, model_dir: Path) -> None:
    """The shipped vLLM profile, pointed at the local model and kept off the network."""
    directory.mkdir()
    shipped = load_profiles()[VLLM_PROFILE]
    data = shipped.model_dump(exclude={"source_file"}, exclude_none=True)
    data["path"] = str(model_dir)
    data["env"] = {**shipped.env, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    (directory / f"{VLLM_PROFILE}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    python = vllm_python()  # skip (or fail under CI) before anything starts
    data_dir = tmp_path_factory.mktemp("vllm-switch")
    model_dir = model_without_template(smollm2_hf_dir(), data_dir / "smollm2-bare")
    write_vllm_profile(data_dir / "profiles", model_dir)
    port = free_port()
    env = serve_env(data_dir, port, None)
    env.update(
        CHATGATE_PROFILES_DIR=str(data_dir / "profiles"),
        CHATGATE_VLLM_PYTHON=str(python),
        CHATGATE_EMBEDDED_CTX="1024",
        CHATGATE_ENGINE_HEALTH_INTERVAL="1",
        CHATGATE_ENGINE_TTFT_TIMEOUT="120",
    )
    instance = Served(data_dir, port, env)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def test_switch_to_vllm_and_chat(served: Served) -> None:
    status = switch_and_wait(served, VLLM_PROFILE, timeout=600)
    assert status["phase"] == "ready", status
    text, usage = chat_text(served, VLLM_PROFILE, "Name three colours.")
    assert text.strip() and usage["completion_tokens"] > 0
    # The web chat of the default model (now vLLM), stored as a conversation.
    response = httpx.post(
        served.url + "/api/chat",
        json={"message": "Name a fruit.", "max_tokens": 16},
        headers=admin_headers(served),
        timeout=120,
    )
    events = parse_sse(response.text)
    assert response.status_code == 200 and text_of(events).strip()
    assert events[0].data["model"] == VLLM_PROFILE  # type: ignore[index]
    template = served.data_dir / "run" / f"chat-template-{VLLM_PROFILE}.jinja"
    assert "<|im_start|>" in template.read_text()  # the profile's template, given to vLLM


def test_the_managed_vllm_engine_reports_its_gauges(served: Served) -> None:
    engines = httpx.get(
        f"{served.url}/api/admin/engines", headers=admin_headers(served), timeout=60
    ).json()
    (engine,) = engines["engines"]
    assert engine["model_id"] == VLLM_PROFILE and engine["kind"] == "managed"
    assert engine["state"] == "ready" and engine["healthy"] and engine["pid"]
    assert engine["metrics"] is not None
    assert engine["metrics"]["kv_cache_usage"] is not None


def test_switch_back_to_llamacpp(served: Served) -> None:
    status = switch_and_wait(served, ENGINE_NAME, timeout=300)
    assert status["phase"] == "ready", status
    assert chat_text(served, ENGINE_NAME)[0]
    models = httpx.get(
        f"{served.url}/api/admin/models", headers=admin_headers(served), timeout=60
    ).json()
    by_id = {m["id"]: m for m in models["models"]}
    assert by_id[ENGINE_NAME]["active"] and by_id[VLLM_PROFILE]["state"] == "not_running"

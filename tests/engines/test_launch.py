"""Engine command lines built from model profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chatgate.engines.launch import (
    LaunchError,
    model_has_chat_template,
    plan_launch,
    supervisor_for,
)
from chatgate.engines.profiles import ModelProfile, load_profiles
from chatgate.settings import DEFAULT_MODEL_ID, Settings

TEMPLATE = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{% endfor %}"


def settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(data_dir=tmp_path, jwt_secret="x" * 40, **extra)


def vllm_profile(**extra: Any) -> ModelProfile:
    fields: dict[str, Any] = {
        "id": "m",
        "name": "M",
        "engine": "vllm",
        "hf_id": "org/m",
        "params_b": 14.8,
        "num_layers": 48,
        "num_kv_heads": 8,
        "head_dim": 128,
        "context_length": 131072,
        "max_model_len": 8192,
        "engine_args": {"tensor-parallel-size": 2, "gpu-memory-utilization": 0.55},
    }
    fields.update(extra)
    return ModelProfile(**fields)


def test_vllm_command_is_the_seed_command(tmp_path: Path) -> None:
    plan = plan_launch(vllm_profile(), settings(tmp_path, vllm_python="/opt/vllm/bin/python"))
    argv = plan.command(8000)
    assert argv[:3] == ["/opt/vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(argv)
    for expected in (
        "--model org/m",
        "--served-model-name m",
        "--host 127.0.0.1",
        "--port 8000",
        "--tensor-parallel-size 2",
        "--gpu-memory-utilization 0.55",  # this test's own profile
        "--max-model-len 8192",
        "--dtype float16",
    ):
        assert expected in joined
    assert plan.ready_path == "/health"


def test_quantized_profiles_let_vllm_pick_the_kernel_and_bare_flags(tmp_path: Path) -> None:
    profile = vllm_profile(
        quantization="awq", engine_args={"enforce-eager": True, "enable-prefix-caching": False}
    )
    argv = plan_launch(profile, settings(tmp_path)).command(1)
    assert "--quantization" not in argv  # read from the checkpoint: vLLM picks awq_marlin
    assert "--enforce-eager" in argv
    assert "--enable-prefix-caching" not in argv
    after = argv[argv.index("--enforce-eager") + 1 :]
    assert after == [] or after[0].startswith("--")  # a bare flag: no value follows


def test_profile_chat_template_is_applied_only_when_the_model_has_none(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 2048}))
    conf = settings(tmp_path)
    argv = plan_launch(vllm_profile(path=str(bare), chat_template=TEMPLATE), conf).command(1)
    template_file = Path(argv[argv.index("--chat-template") + 1])
    assert template_file.read_text() == TEMPLATE
    assert argv[argv.index("--model") + 1] == str(bare)

    own = tmp_path / "own"
    own.mkdir()
    (own / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    assert model_has_chat_template(own)
    argv = plan_launch(vllm_profile(path=str(own), chat_template=TEMPLATE), conf).command(1)
    assert "--chat-template" not in argv


def test_hub_models_keep_their_own_template(tmp_path: Path) -> None:
    argv = plan_launch(vllm_profile(chat_template=TEMPLATE), settings(tmp_path)).command(1)
    assert "--chat-template" not in argv


def test_the_embedded_profile_follows_the_embedded_settings(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    conf = settings(
        tmp_path, embedded_model_path=gguf, embedded_threads=3, embedded_ctx=1024,
        engine_python="/py",
    )  # fmt: skip
    embedded = load_profiles()[DEFAULT_MODEL_ID]
    plan = plan_launch(embedded, conf)
    argv = plan.command(9000)
    assert argv[:3] == ["/py", "-m", "llama_cpp.server"]
    assert argv[argv.index("--model") + 1] == str(gguf)
    assert argv[argv.index("--n_ctx") + 1] == "1024"
    assert argv[argv.index("--n_threads") + 1] == "3"
    assert argv[argv.index("--model_alias") + 1] == DEFAULT_MODEL_ID
    assert plan.ready_path == "/v1/models"
    # Conversations taking turns on the one llama.cpp slot resume from the prompt cache.
    assert argv[argv.index("--cache") + 1] == "true"
    assert argv[argv.index("--cache_size") + 1] == str(1024 * 2**20)
    assert argv[argv.index("--n_batch") + 1] == "128"  # smaller saved states
    no_cache = conf.model_copy(update={"embedded_prompt_cache_mb": 0})
    assert "--cache" not in plan_launch(embedded, no_cache).command(9000)


def test_llamacpp_profiles_need_their_file(tmp_path: Path) -> None:
    profile = ModelProfile(
        id="local-gguf",
        name="Local",
        engine="llamacpp",
        path=str(tmp_path / "missing.gguf"),
        params_b=1.0,
        num_layers=2,
        num_kv_heads=1,
        head_dim=8,
        context_length=4096,
        max_model_len=4096,
    )
    with pytest.raises(LaunchError, match="missing"):
        plan_launch(profile, settings(tmp_path))


def test_openai_profiles_are_attached_not_started(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="attach"):
        plan_launch(vllm_profile(engine="openai", url="http://engine:8000/v1"), settings(tmp_path))


def test_supervisor_uses_the_profile_id_and_paths(tmp_path: Path) -> None:
    supervisor = supervisor_for(vllm_profile(), settings(tmp_path), port=8123)
    assert supervisor.name == "m"
    assert supervisor.base_url == "http://127.0.0.1:8123/v1"
    assert supervisor.log_file == tmp_path / "logs" / "engine-m.log"

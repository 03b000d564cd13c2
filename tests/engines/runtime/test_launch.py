"""Engine command lines built from model profiles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chatgate.engines.catalog.profiles import ModelProfile, load_profiles
from chatgate.engines.runtime.launch import (
    LaunchError,
    liveness_for,
    model_has_chat_template,
    plan_launch,
    supervisor_for,
)
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
    assert not plan.native


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
    server = tmp_path / "llama-server"
    server.write_bytes(b"")
    conf = settings(
        tmp_path, embedded_model_path=gguf, embedded_threads=3, embedded_ctx=1024,
        embedded_parallel=4, embedded_kv_tokens=2048, llama_server=server,
    )  # fmt: skip
    embedded = load_profiles()[DEFAULT_MODEL_ID]
    plan = plan_launch(embedded, conf)
    argv = plan.command(9000)
    assert argv[0] == str(server)
    assert argv[argv.index("--model") + 1] == str(gguf)
    assert argv[argv.index("--alias") + 1] == DEFAULT_MODEL_ID
    assert argv[argv.index("--threads") + 1] == "3"
    assert argv[argv.index("--parallel") + 1] == "4"
    assert argv[argv.index("--ctx-size") + 1] == "2048"
    assert argv[argv.index("--kv-unified-per-slot") + 1] == "1024"
    # Conversations that come back resume from the prompt cache in RAM.
    assert argv[argv.index("--cache-ram") + 1] == "1024"
    assert plan.native  # a crash gets the CPU diagnosis
    no_cache = conf.model_copy(update={"embedded_prompt_cache_mb": 0})
    argv = plan_launch(embedded, no_cache).command(9000)
    assert argv[argv.index("--cache-ram") + 1] == "0"


def test_a_profile_with_embeddings_gets_llama_servers_embedding_flags(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    server = tmp_path / "llama-server"
    server.write_bytes(b"")
    conf = settings(tmp_path, embedded_model_path=gguf, llama_server=server)
    embedded = load_profiles()[DEFAULT_MODEL_ID]
    assert embedded.embeddings is not None and embedded.embeddings.dimensions == 576
    argv = plan_launch(embedded, conf).command(9000)
    assert "--embeddings" in argv
    assert argv[argv.index("--pooling") + 1] == embedded.embeddings.pooling
    # One input in one micro-batch, a multiple of the slots (llama.cpp's mean pooling
    # aborts otherwise): 512 tokens with 5 slots -> 515.
    micro_batch = int(argv[argv.index("--ubatch-size") + 1])
    assert argv[argv.index("--batch-size") + 1] == str(micro_batch)
    assert conf.embedded_parallel == 5 and micro_batch == 515
    # Another llama.cpp profile gets them only when it declares embeddings too.
    local = embedded.model_copy(update={"id": "local", "path": str(gguf), "embeddings": None})
    assert "--embeddings" not in plan_launch(local, conf).command(9000)


def test_supervised_engines_are_proven_by_a_token(tmp_path: Path) -> None:
    conf = settings(tmp_path, engine_crash_limit=4, engine_wedged_seconds=90)
    liveness = liveness_for(load_profiles()[DEFAULT_MODEL_ID], conf, native=True)
    assert liveness.probe is not None and liveness.probe.model == DEFAULT_MODEL_ID
    assert liveness.probe.health_path == "/health"
    assert (liveness.crash_limit, liveness.wedged_seconds) == (4, 90)
    assert liveness.hint is not None and liveness.hint(-11) is not None  # SIGSEGV
    assert liveness.hint(1) is None  # a plain exit is not a CPU problem


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


def test_llamacpp_profiles_with_llama_cpp_python_option_names_still_work(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    server = tmp_path / "llama-server"
    server.write_bytes(b"")
    profile = ModelProfile(
        id="local", name="Local", engine="llamacpp", path=str(gguf), params_b=1.0,
        num_layers=2, num_kv_heads=2, head_dim=64, context_length=4096, max_model_len=2048,
        engine_args={"n_threads": 1, "n_gpu_layers": 99},
    )  # fmt: skip
    argv = plan_launch(profile, settings(tmp_path, llama_server=server)).command(9000)
    assert argv[argv.index("--threads") + 1] == "1"
    assert argv[argv.index("--n-gpu-layers") + 1] == "99"
    assert argv[argv.index("--parallel") + 1] == "1"
    assert argv[argv.index("--kv-unified-per-slot") + 1] == "2048"
    assert "--n_threads" not in argv

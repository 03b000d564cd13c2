"""Usage accounting: one row per chat or /v1 request, group-committed."""

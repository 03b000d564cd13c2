"""Authentication: passwords, JWT sessions, API keys, request identity."""

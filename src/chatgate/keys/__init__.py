"""Named API keys per user, stored as hashes and shown once."""

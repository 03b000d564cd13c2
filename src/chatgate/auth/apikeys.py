"""API keys: ``sk-cg-`` + 40 random characters, stored as SHA-256 only.

Keys carry 240 bits of entropy, so a fast hash is safe (a slow KDF would only
add latency to every /v1 call); lookups go by hash and the final comparison is
constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "sk-cg-"
_DISPLAY_CHARS = 12


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def display_prefix(key: str) -> str:
    return key[:_DISPLAY_CHARS]


def matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)

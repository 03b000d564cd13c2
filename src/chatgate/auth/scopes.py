"""What an API key may reach. A key without scopes may do what its owner may, except
manage keys and the password; a key with scopes is limited to those route groups."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Scope = Literal["openai", "chat", "profile", "admin"]

SCOPE_PREFIXES: dict[str, tuple[str, ...]] = {
    "openai": ("/v1/",),
    "chat": ("/api/chat", "/api/conversations", "/api/models"),
    "profile": ("/api/users/me", "/api/auth/verify", "/api/usage", "/api/limits/me"),
    "admin": ("/api/admin/",),
}
# Credentials are managed only from a login session, never with a key.
NEVER_WITH_KEY = ("/api/keys", "/api/users/me/password", "/api/auth/logout", "/api/auth/refresh")


def key_may_access(scopes: Sequence[str], path: str) -> bool:
    if path.startswith(NEVER_WITH_KEY):
        return False
    if not scopes:
        return True
    return any(path.startswith(SCOPE_PREFIXES.get(scope, ())) for scope in scopes)

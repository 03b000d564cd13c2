"""argon2id password hashing with real parameters, and the API key format and hashing."""

from __future__ import annotations

import hashlib
import re

from argon2 import PasswordHasher

from chatgate.auth import apikeys, passwords

PASSWORD = "correct-horse-battery"


def argon2_params(encoded: str) -> dict[str, int]:
    match = re.match(r"^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$[^$]+\$[^$]+$", encoded)
    assert match, encoded
    m, t, p = (int(group) for group in match.groups())
    return {"m": m, "t": t, "p": p}


def test_hash_is_argon2id_with_owasp_parameters() -> None:
    encoded = passwords.hash_password(PASSWORD)
    params = argon2_params(encoded)
    # OWASP: argon2id with at least m=19 MiB, t=2, p=1 (or an equivalent trade-off).
    assert params["m"] >= 19 * 1024
    assert params["t"] >= 2 or params["m"] >= 46 * 1024
    assert params["p"] >= 1
    assert PASSWORD not in encoded
    assert not passwords.needs_rehash(encoded)


async def test_verify_and_salting() -> None:
    first = await passwords.hash_password_async(PASSWORD)
    second = passwords.hash_password(PASSWORD)
    assert first != second  # random salt
    assert passwords.verify_password(first, PASSWORD)
    assert await passwords.verify_password_async(second, PASSWORD)
    assert not passwords.verify_password(first, PASSWORD + "!")
    assert not await passwords.verify_password_async(first, "")


def test_verify_never_raises() -> None:
    assert not passwords.verify_password(None, PASSWORD)
    assert not passwords.verify_password("", PASSWORD)
    assert not passwords.verify_password("not-a-hash", PASSWORD)
    assert not passwords.verify_password("$argon2id$v=19$m=65536,t=3,p=4$broken", PASSWORD)


def test_weak_hashes_need_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    assert passwords.verify_password(weak, PASSWORD)
    assert passwords.needs_rehash(weak)


def test_generated_passwords() -> None:
    generated = {passwords.generate_password() for _ in range(50)}
    assert len(generated) == 50
    assert all(len(p) >= passwords.MIN_PASSWORD_LENGTH for p in generated)


def test_key_format_and_entropy() -> None:
    keys = {apikeys.generate_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("sk-cg-")
        assert re.fullmatch(r"sk-cg-[A-Za-z0-9_-]{40}", key), key
        assert apikeys.looks_like_key(key)


def test_key_hash_and_prefix() -> None:
    key = apikeys.generate_key()
    stored = apikeys.hash_key(key)
    assert stored == hashlib.sha256(key.encode()).hexdigest()
    assert len(stored) == 64 and key not in stored
    assert apikeys.matches(key, stored)
    assert not apikeys.matches(key + "x", stored)
    assert not apikeys.matches(apikeys.generate_key(), stored)
    prefix = apikeys.display_prefix(key)
    assert key.startswith(prefix) and prefix.startswith("sk-cg-")
    # The prefix identifies a key in lists without revealing its secret part.
    assert len(key) - len(prefix) >= 32


def test_jwts_do_not_look_like_keys() -> None:
    assert not apikeys.looks_like_key("eyJhbGciOiJIUzI1NiJ9.e30.sig")
    assert not apikeys.looks_like_key("sk-other-provider")

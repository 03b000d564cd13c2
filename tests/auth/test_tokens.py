"""TokenCodec: HS256 only, exp/iat/iss/aud/typ checked, anything else is rejected (None)."""

from __future__ import annotations

import time
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from chatgate.auth.tokens import ALGORITHM, CLOCK_SKEW, TokenCodec

SECRET = "unit-test-secret-" + "s" * 40
OTHER_SECRET = "another-secret-" + "o" * 40


@pytest.fixture
def codec() -> TokenCodec:
    return TokenCodec(SECRET, "chatgate", "chatgate")


def issue(codec: TokenCodec, kind: Any = "access", lifetime: float = 600) -> str:
    token, _ = codec.encode(
        user_id=42,
        username="alice",
        role="user",
        session_id="sess-1",
        kind=kind,
        lifetime=timedelta(seconds=lifetime),
    )
    return token


def claims_of(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def sign(payload: dict[str, Any], secret: str | None = SECRET, algorithm: str = ALGORITHM) -> str:
    with warnings.catch_warnings():
        # PyJWT warns about short HMAC keys for HS384/HS512; the forgery is the point here.
        warnings.simplefilter("ignore")
        return jwt.encode(payload, secret, algorithm=algorithm)


def test_round_trip_carries_the_claims(codec: TokenCodec) -> None:
    token, expires = codec.encode(
        user_id=42,
        username="alice",
        role="admin",
        session_id="sess-1",
        kind="access",
        lifetime=timedelta(minutes=30),
    )
    claims = codec.decode(token, "access")
    assert claims is not None
    assert (claims.user_id, claims.username, claims.role) == (42, "alice", "admin")
    assert (claims.session_id, claims.kind) == ("sess-1", "access")
    assert claims.expires_at == expires.replace(microsecond=0)
    assert abs((claims.expires_at - datetime.now(UTC)).total_seconds() - 1800) < 5
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "HS256"
    raw = claims_of(token)
    assert raw["iss"] == "chatgate" and raw["aud"] == "chatgate"
    assert raw["typ"] == "access" and raw["sub"] == "42"
    assert raw["exp"] - raw["iat"] == 1800


def test_each_token_is_unique(codec: TokenCodec) -> None:
    first, second = issue(codec), issue(codec)
    assert first != second
    assert claims_of(first)["jti"] != claims_of(second)["jti"]


def test_kind_is_checked(codec: TokenCodec) -> None:
    access, refresh = issue(codec, "access"), issue(codec, "refresh")
    assert codec.decode(access, "refresh") is None
    assert codec.decode(refresh, "access") is None
    assert codec.decode(refresh, "refresh") is not None


def test_expired_token_is_rejected(codec: TokenCodec) -> None:
    assert codec.decode(issue(codec, lifetime=-60), "access") is None
    assert codec.decode(issue(codec, "refresh", lifetime=-6), "refresh") is None


def test_small_clock_skew_is_tolerated(codec: TokenCodec) -> None:
    """Replicas' clocks differ slightly: a token minted a moment "in the future" is valid."""
    payload = claims_of(issue(codec))
    now = int(time.time())
    payload["iat"] = now + 2
    payload["exp"] = now + 600
    assert codec.decode(sign(payload), "access") is not None


def test_other_secret_is_rejected(codec: TokenCodec) -> None:
    foreign = TokenCodec(OTHER_SECRET, "chatgate", "chatgate")
    assert codec.decode(issue(foreign), "access") is None
    payload = claims_of(issue(codec))
    assert codec.decode(sign(payload, OTHER_SECRET), "access") is None


def test_alg_none_is_rejected(codec: TokenCodec) -> None:
    payload = claims_of(issue(codec))
    unsigned = jwt.encode(payload, None, algorithm="none")
    assert unsigned.endswith(".")
    assert codec.decode(unsigned, "access") is None
    # The same, with the original signature pasted back on.
    original_signature = issue(codec).rsplit(".", 1)[1]
    assert codec.decode(unsigned + original_signature, "access") is None


@pytest.mark.parametrize("algorithm", ["HS384", "HS512"])
def test_only_hs256_is_accepted(codec: TokenCodec, algorithm: str) -> None:
    payload = claims_of(issue(codec))
    assert codec.decode(sign(payload, SECRET, algorithm), "access") is None


@pytest.mark.parametrize(
    ("issuer", "audience"), [("evil", "chatgate"), ("chatgate", "evil"), ("evil", "evil")]
)
def test_issuer_and_audience_are_checked(codec: TokenCodec, issuer: str, audience: str) -> None:
    foreign = TokenCodec(SECRET, issuer, audience)
    assert codec.decode(issue(foreign), "access") is None


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub", "sid", "typ"])
def test_required_claims(codec: TokenCodec, claim: str) -> None:
    payload = claims_of(issue(codec))
    assert codec.decode(sign(payload), "access") is not None
    del payload[claim]
    assert codec.decode(sign(payload), "access") is None


def test_tampered_payload_is_rejected(codec: TokenCodec) -> None:
    token = issue(codec)
    header, _, signature = token.split(".")
    payload = claims_of(token)
    payload["role"] = "admin"
    payload["sub"] = "1"
    forged_body = jwt.encode(payload, "x" * 40, algorithm="HS256").split(".")[1]
    assert codec.decode(f"{header}.{forged_body}.{signature}", "access") is None


@pytest.mark.parametrize(
    "garbage", ["", "not-a-token", "a.b.c", "sk-cg-abc", "Bearer x", "e30.e30.e30"]
)
def test_garbage_is_rejected(codec: TokenCodec, garbage: str) -> None:
    assert codec.decode(garbage, "access") is None


def test_non_numeric_subject_is_rejected(codec: TokenCodec) -> None:
    payload = claims_of(issue(codec))
    payload["sub"] = "alice"
    assert codec.decode(sign(payload), "access") is None


def test_token_issued_in_the_future_is_rejected(codec: TokenCodec) -> None:
    payload = claims_of(issue(codec))
    now = int(time.time())
    payload["iat"] = now + 3600
    payload["exp"] = now + 7200
    assert codec.decode(sign(payload), "access") is None
    payload["iat"] = now + int(CLOCK_SKEW.total_seconds()) + 5
    assert codec.decode(sign(payload), "access") is None

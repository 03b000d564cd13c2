"""JWT (HS256) access and refresh tokens bound to a revocable login session."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

ALGORITHM = "HS256"
# Tolerated clock difference between replicas: iat is whole seconds, so without any, a token
# used at once on a replica whose clock trails by a few milliseconds is "not yet valid".
CLOCK_SKEW = timedelta(seconds=5)
TokenKind = Literal["access", "refresh"]


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    username: str
    role: str
    session_id: str
    kind: TokenKind
    expires_at: datetime


class TokenCodec:
    def __init__(self, secret: str, issuer: str, audience: str) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience

    def encode(
        self,
        *,
        user_id: int,
        username: str,
        role: str,
        session_id: str,
        kind: TokenKind,
        lifetime: timedelta,
    ) -> tuple[str, datetime]:
        now = datetime.now(UTC)
        expires = now + lifetime
        payload: dict[str, Any] = {
            "sub": str(user_id),
            "name": username,
            "role": role,
            "sid": session_id,
            "typ": kind,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "iss": self._issuer,
            "aud": self._audience,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM), expires

    def decode(self, token: str, kind: TokenKind) -> TokenClaims | None:
        """Validated claims, or None for any invalid, expired or wrong-kind token."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=self._issuer,
                audience=self._audience,
                leeway=CLOCK_SKEW,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "sid", "typ"]},
            )
        except jwt.PyJWTError:
            return None
        if payload.get("typ") != kind:
            return None
        try:
            return TokenClaims(
                user_id=int(payload["sub"]),
                username=str(payload.get("name", "")),
                role=str(payload.get("role", "user")),
                session_id=str(payload["sid"]),
                kind=kind,
                expires_at=datetime.fromtimestamp(int(payload["exp"]), UTC),
            )
        except (TypeError, ValueError):
            return None

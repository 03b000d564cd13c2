from __future__ import annotations

from pydantic import BaseModel, Field

from chatgate.request_body import RequestBody


class LoginRequest(RequestBody):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class RefreshRequest(RequestBody):
    refresh_token: str = Field(min_length=1, max_length=4096)


class VerifyResponse(BaseModel):
    username: str
    role: str
    exp: int | None
    user_id: int

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chatgate.auth.passwords import MIN_PASSWORD_LENGTH
from chatgate.request_body import PositiveJsonInt, RequestBody
from chatgate.sampling import Temperature, TopP

Role = Literal["user", "admin"]
USERNAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,64}$"


def _blank_email_is_none(value: str | None) -> str | None:
    """Forms send "" for "no e-mail"; stored as "" it would collide on the unique index."""
    if value is None:
        return None
    value = value.strip()
    return value or None


Email = Annotated[str | None, Field(max_length=255), AfterValidator(_blank_email_is_none)]


class UserSettings(RequestBody):
    """Per-user defaults applied to new chats."""

    model_config = ConfigDict(extra="forbid")

    default_model: str | None = Field(default=None, max_length=128)
    system_prompt: str | None = Field(default=None, max_length=20_000)
    temperature: Temperature | None = None  # the ranges of chatgate.sampling
    top_p: TopP | None = None
    max_tokens: PositiveJsonInt | None = None
    language: str | None = Field(default=None, max_length=16)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    email: str | None
    role: str
    disabled: bool
    settings: dict[str, Any]
    created_at: datetime


class UserCreate(RequestBody):
    username: str = Field(pattern=USERNAME_PATTERN)
    password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)
    email: Email = None
    role: Role = "user"


class UserUpdate(RequestBody):
    email: Email = None
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class PasswordChange(RequestBody):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)


class UserList(BaseModel):
    users: list[UserOut]

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.json_schema import SkipJsonSchema

from chatgate.request_body import RequestBody


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    parent_id: int | None
    role: str
    content: str
    status: str
    token_in: int | None
    token_out: int | None
    model: str | None
    finish_reason: str | None
    error: str | None
    created_at: datetime


class ConversationOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    model: str | None
    system_prompt: str | None
    archived: bool
    created_at: datetime
    updated_at: datetime


class ConversationDetail(ConversationOut):
    messages: list[MessageOut]
    active_generation_id: str | None = None


class ConversationPage(BaseModel):
    conversations: list[ConversationOut]
    next_cursor: str | None


class ConversationCreate(RequestBody):
    title: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=128)
    system_prompt: str | None = Field(default=None, max_length=20_000)


class ConversationUpdate(RequestBody):
    """Omitted fields stay as they are; null clears ``model`` and ``system_prompt``."""

    # May be omitted, not null (SkipJsonSchema: the schema says so too).
    title: Annotated[str, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    model: str | None = Field(default=None, max_length=128)
    system_prompt: str | None = Field(default=None, max_length=20_000)
    archived: bool | SkipJsonSchema[None] = None

    @field_validator("title", "archived")
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Both columns are NOT NULL: an explicit null is a client error, not a 500.
        if value is None:
            raise ValueError("may not be null")
        return value


class ImportedMessage(RequestBody):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=1_000_000)
    model: str | None = None
    status: Literal["complete", "interrupted", "error"] = "complete"


class ConversationImport(RequestBody):
    title: str = Field(default="Imported chat", max_length=200)
    model: str | None = Field(default=None, max_length=128)
    system_prompt: str | None = Field(default=None, max_length=20_000)
    messages: list[ImportedMessage] = Field(max_length=10_000)

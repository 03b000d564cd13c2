from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from chatgate.request_body import JsonInt, PositiveJsonInt, RequestBody, RowIdJsonInt
from chatgate.sampling import Penalty, Temperature, TopP


class ChatMessageIn(RequestBody):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=1_000_000)


class SamplingParams(RequestBody):
    """Sampling parameters a chat may set; anything else is not sent to the engine."""

    # The ranges are shared with /v1 and the users' saved defaults (chatgate.sampling).
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: PositiveJsonInt | None = None
    stop: str | list[str] | None = None
    seed: JsonInt | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None


class ChatRequest(SamplingParams):
    conversation_id: str | None = Field(default=None, max_length=36)
    message: str | None = Field(default=None, max_length=1_000_000)
    messages: list[ChatMessageIn] | None = None
    model: str | None = Field(default=None, max_length=128)
    system_prompt: str | None = Field(default=None, max_length=100_000)
    # Branching: answer again after this user message (regenerate), or put the new
    # message after this one (edit and resend; null = a new first message).
    parent_id: RowIdJsonInt | None = None
    regenerate: bool = False

    @property
    def branches(self) -> bool:
        return "parent_id" in self.model_fields_set

    @model_validator(mode="after")
    def _one_input(self) -> ChatRequest:
        if (self.branches or self.regenerate) and self.conversation_id is None:
            raise ValueError("'parent_id' and 'regenerate' need a 'conversation_id'")
        if self.regenerate:
            if self.parent_id is None or self.message is not None or self.messages is not None:
                raise ValueError("'regenerate' needs 'parent_id' (a user message) and no message")
            return self
        if self.branches and self.messages is not None:
            raise ValueError("'parent_id' goes with 'message', not 'messages'")
        if (self.message is None) == (self.messages is None):
            raise ValueError("send exactly one of 'message' or 'messages'")
        if self.message is not None and not self.message.strip():
            raise ValueError("'message' must not be empty")
        if self.messages is not None and (not self.messages or self.messages[-1].role != "user"):
            raise ValueError("'messages' must end with a user message")
        return self


class StopResponse(BaseModel):
    generation_id: str
    stopped: bool

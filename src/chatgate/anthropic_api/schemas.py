"""The Messages request as Anthropic documents it, validated once.

Unknown top-level fields are kept (``extra="allow"``) so a newer SDK's additions do not
break requests; content blocks are a closed set, because a block the gateway cannot
translate must be a clean 400 rather than silently dropped context.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chatgate.errors import APIError
from chatgate.request_body import CountJsonInt, PositiveJsonInt


class _Block(BaseModel):
    model_config = ConfigDict(extra="allow")  # cache_control, citations: accepted, unused


class TextBlock(_Block):
    type: Literal["text"]
    text: str


class ImageSource(BaseModel):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(_Block):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool | None = None


class ThinkingBlock(_Block):
    """Sent back by clients that replay a whole turn; the engines have no use for it."""

    type: Literal["thinking", "redacted_thinking"]


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock,
    Field(discriminator="type"),
]


class Message(BaseModel):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class Tool(BaseModel):
    """A client tool. Anthropic's server tools (``web_search_…``) carry a ``type`` and no
    ``input_schema``: refused, nothing here runs them."""

    model_config = ConfigDict(extra="allow")
    name: str
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None


class ToolChoice(BaseModel):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class OutputFormat(BaseModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    """Structured output; ``effort`` (and what newer SDKs add) means nothing to the engines."""

    model_config = ConfigDict(extra="allow")
    format: OutputFormat | None = None


class CountTokensRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None


class MessagesRequest(CountTokensRequest):
    max_tokens: PositiveJsonInt
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: CountJsonInt | None = None
    metadata: dict[str, Any] | None = None
    output_config: OutputConfig | None = None


T = TypeVar("T", bound=BaseModel)


def parse(model: type[T], body: Any) -> T:
    """The body as ``model``, or a 400 naming the first field that is wrong."""
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object", "invalid_request")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = f"{where}: {first['msg']}" if where else str(first["msg"])
        raise APIError(400, message, "invalid_request", param=where or None) from exc

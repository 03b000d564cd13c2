"""The Responses request as OpenAI documents it, validated once.

Unknown top-level fields are kept (``extra="allow"``): the SDKs add fields often, and
most (``include``, ``reasoning``, ``prompt_cache_key``…) change nothing an engine behind
chat completions could do. Input items and content parts are a closed set: an item the
gateway cannot translate is a clean 400 naming it, never silently dropped context.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from chatgate.errors import APIError
from chatgate.request_body import PositiveJsonInt


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")  # annotations, logprobs, detail: accepted


class InputText(_Part):
    type: Literal["input_text", "output_text", "text"]
    text: str


class Refusal(_Part):
    type: Literal["refusal"]
    refusal: str


class InputImage(_Part):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None


class InputFile(_Part):
    """Files live in OpenAI's file store; nothing here can read them (refused)."""

    type: Literal["input_file"]


ContentPart = Annotated[InputText | Refusal | InputImage | InputFile, Field(discriminator="type")]


class MessageItem(_Part):
    """An input message (``type`` optional: the SDKs' "easy" form has none) or an
    assistant output message sent back."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | None = None


class FunctionCallItem(_Part):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None


class FunctionCallOutputItem(_Part):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[ContentPart]
    id: str | None = None


class ReasoningItem(_Part):
    """Sent back by clients that replay a whole output; engines have no use for it."""

    type: Literal["reasoning"]


def _item_type(value: Any) -> str:
    """An item's ``type``; a message may leave it out (the SDKs' "easy" input form)."""
    found = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return found if isinstance(found, str) else "message"


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_type),
]


class FunctionTool(BaseModel):
    """A function tool. Hosted tools (``web_search``, ``file_search``…) are refused:
    nothing here runs them."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class FunctionChoice(BaseModel):
    type: Literal["function"]
    name: str


class AllowedTool(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    name: str


class AllowedTools(BaseModel):
    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[AllowedTool]


ToolChoice = Literal["auto", "none", "required"] | FunctionChoice | AllowedTools


class TextFormat(BaseModel):
    """``text.format``: plain text, any JSON object, or JSON following a schema."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    input: str | list[InputItem] = Field(default_factory=list)
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    tools: list[FunctionTool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: PositiveJsonInt | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None


T = TypeVar("T", bound=BaseModel)


def parse(model: type[T], body: Any) -> T:
    """The body as ``model``, or a 400 naming the first field that is wrong (``param``,
    as OpenAI names it: ``input[0].content``)."""
    if not isinstance(body, dict):
        raise APIError(400, "The request body must be a JSON object", "invalid_request")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # The deepest error: of a union's branches, the one the client meant.
        first = max(exc.errors(), key=lambda error: len(error["loc"]))
        where = _param(first["loc"])
        message = f"Invalid '{where}': {first['msg']}" if where else str(first["msg"])
        raise APIError(400, message, "invalid_value", param=where or None) from exc


def _param(loc: tuple[int | str, ...]) -> str:
    """pydantic's location as OpenAI writes a param (``input[0].content``): indexes in
    brackets, the names of union members left out (a discriminator's tag right after an
    index, a type's name such as ``str`` or ``list[...]``)."""
    out = ""
    previous: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not (isinstance(previous, int) and part in _ITEM_TAGS) and not _type_name(part):
            out += f".{part}" if out else part
        previous = part
    return out


_ITEM_TAGS = frozenset(
    {
        "message", "function_call", "function_call_output", "reasoning", "function",
        "input_text", "output_text", "text", "refusal", "input_image", "input_file",
    }
)  # fmt: skip


def _type_name(part: str) -> bool:
    return "[" in part or part in ("str", "FunctionChoice", "AllowedTools")


def unsupported(message: str, param: str) -> APIError:
    return APIError(400, message, "unsupported_value", param=param)

"""Responses request ⇄ chat completions: input items to chat messages, tools and text
format to their chat fields, and the request's settings echoed in the response object.

The engines (llama.cpp, vLLM) speak chat completions, and the gateway's limits, fair
queue and usage rows are built around that path; translating at the edge keeps one
engine path for every dialect (as ``anthropic_api.translate`` does).
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from chatgate.errors import APIError
from chatgate.responses_api.schemas import (
    AllowedTools,
    ContentPart,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionChoice,
    InputFile,
    InputImage,
    InputItem,
    InputText,
    MessageItem,
    Refusal,
    ResponsesRequest,
    TextFormat,
    unsupported,
)

ITEMS = TypeAdapter(list[InputItem])
# Chat roles: "developer" is OpenAI's newer name for "system", which every chat
# template knows.
ROLES = {"developer": "system"}


def input_items(request: ResponsesRequest, raw: dict[str, Any]) -> list[dict[str, Any]]:
    """This request's input as a list of item dicts, as the client sent them (a string
    input is one user message): what a later ``previous_response_id`` replays."""
    if isinstance(request.input, str):
        return (
            [{"type": "message", "role": "user", "content": request.input}] if request.input else []
        )
    items = raw.get("input")
    return list(items) if isinstance(items, list) else []


def to_chat_body(request: ResponsesRequest, prior: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions body: the ``prior`` items (the previous response's
    conversation and output) then this request's input. It streams whatever the client
    asked, so a client that leaves aborts the engine and the engine's own counts arrive."""
    _refuse_unsupported(request)
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    try:
        earlier = ITEMS.validate_python(prior)
    except ValidationError as exc:  # stored by an older gateway in a shape now refused
        raise APIError(400, "The previous response cannot be continued", "invalid_value",
                       param="previous_response_id") from exc  # fmt: skip
    current = [] if isinstance(request.input, str) else request.input
    messages += to_chat_messages([*earlier, *current], len(earlier))
    if isinstance(request.input, str) and request.input:
        messages.append({"role": "user", "content": request.input})
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True}
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
    for name in ("temperature", "top_p", "parallel_tool_calls", "user"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value
    body.update(tool_fields(request))
    text_format = request.text.format if request.text else None
    if text_format is not None and text_format.type != "text":
        body["response_format"] = _response_format(text_format)
    return body


def _refuse_unsupported(request: ResponsesRequest) -> None:
    if request.background:
        raise unsupported("Background responses are not supported", "background")
    if request.conversation is not None:
        raise unsupported("Conversations are not supported; use previous_response_id",
                          "conversation")  # fmt: skip
    if request.prompt is not None:
        raise unsupported("Stored prompt templates are not supported", "prompt")


def to_chat_messages(items: list[InputItem], prior: int) -> list[dict[str, Any]]:
    """Items in order; function calls join the assistant turn right before them (as
    chat completions wants one assistant message with all its ``tool_calls``)."""
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        where = f"input[{index - prior}]"
        if isinstance(item, MessageItem):
            messages.append(_message(item, where))
        elif isinstance(item, FunctionCallItem):
            call = {"id": item.call_id, "type": "function",
                    "function": {"name": item.name, "arguments": item.arguments}}  # fmt: skip
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if last["content"] == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            output = item.output if isinstance(item.output, str) else _text(item.output, where)
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    return messages


def _message(item: MessageItem, where: str) -> dict[str, Any]:
    role = ROLES.get(item.role, item.role)
    if isinstance(item.content, str):
        return {"role": role, "content": item.content}
    if role != "user":  # system and assistant turns are text in every chat template
        return {"role": role, "content": _text(item.content, where)}
    parts = [_part(part, f"{where}.content[{i}]") for i, part in enumerate(item.content)]
    if all(part["type"] == "text" for part in parts):
        return {"role": role, "content": "\n\n".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _part(part: ContentPart, where: str) -> dict[str, Any]:
    if isinstance(part, InputText):
        return {"type": "text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "text", "text": part.refusal}
    if isinstance(part, InputImage):
        if not part.image_url:
            raise unsupported("Images by file_id are not supported; send image_url",
                              f"{where}.file_id")  # fmt: skip
        return {"type": "image_url", "image_url": {"url": part.image_url}}
    assert isinstance(part, InputFile)
    raise unsupported("input_file parts are not supported", f"{where}.type")


def _text(parts: list[ContentPart], where: str) -> str:
    texts: list[str] = []
    for index, part in enumerate(parts):
        chat = _part(part, f"{where}.content[{index}]")
        if chat["type"] != "text":
            raise unsupported("Only text parts are allowed here", f"{where}.content[{index}]")
        texts.append(chat["text"])
    return "\n\n".join(texts)


def tool_fields(request: ResponsesRequest) -> dict[str, Any]:
    tools: list[dict[str, Any]] = [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description or "",
                "parameters": tool.parameters or {"type": "object", "properties": {}},
                **({"strict": tool.strict} if tool.strict is not None else {}),
            },
        }
        for tool in request.tools or []
    ]
    choice = request.tool_choice
    fields: dict[str, Any] = {}
    if isinstance(choice, FunctionChoice):
        fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif isinstance(choice, AllowedTools):
        allowed = {tool.name for tool in choice.tools}
        tools = [tool for tool in tools if tool["function"]["name"] in allowed]
        if not tools:
            raise APIError(400, "No tool in 'tools' is among the allowed tools",
                           "invalid_value", param="tool_choice.tools")  # fmt: skip
        fields["tool_choice"] = choice.mode
    elif choice is not None:
        fields["tool_choice"] = choice
    if tools:
        fields["tools"] = tools
    return fields


def _response_format(text_format: TextFormat) -> dict[str, Any]:
    if text_format.type == "json_object":
        return {"type": "json_object"}
    if text_format.schema_ is None:
        raise APIError(400, "Missing required parameter: 'text.format.schema'",
                       "missing_required_parameter", param="text.format.schema")  # fmt: skip
    schema: dict[str, Any] = {"name": text_format.name or "output", "schema": text_format.schema_}
    if text_format.strict is not None:
        schema["strict"] = text_format.strict
    if text_format.description:
        schema["description"] = text_format.description
    return {"type": "json_schema", "json_schema": schema}


def echo(request: ResponsesRequest, raw: dict[str, Any]) -> dict[str, Any]:
    """The request's settings as the response object repeats them."""
    text = raw.get("text") if isinstance(raw.get("text"), dict) else {}
    assert isinstance(text, dict)
    return {
        "instructions": request.instructions,
        "max_output_tokens": request.max_output_tokens,
        "metadata": request.metadata or {},
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "previous_response_id": request.previous_response_id,
        "store": request.store,
        "temperature": request.temperature,
        "text": {
            "format": text.get("format") or {"type": "text"},
            "verbosity": text.get("verbosity") or "medium",
        },  # fmt: skip
        "tool_choice": raw.get("tool_choice") or "auto",
        "tools": raw.get("tools") or [],
        "top_p": request.top_p,
        "user": request.user,
    }


def chat_param(param: str | None) -> str | None:
    """A chat-path param (``openai_api.validation``) as this dialect names it."""
    if param is None:
        return None
    if param.startswith("messages"):
        return "input"
    return {"max_tokens": "max_output_tokens"}.get(param, param)


def chat_error(exc: APIError) -> APIError:
    """An error of the chat path's checks, its field named as this dialect names it."""
    exc.param = chat_param(exc.param)
    exc.message = exc.message.replace("'max_tokens'", "'max_output_tokens'")
    return exc

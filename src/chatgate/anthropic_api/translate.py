"""Anthropic Messages ⇄ OpenAI chat completions: the request one way, the answer's
stop reason and errors the other.

The engines (llama.cpp, vLLM) speak chat completions, and the gateway's limits, fair
queue and usage rows are built around that path; translating at the edge keeps one
engine path for every dialect.
"""

from __future__ import annotations

from typing import Any

import orjson

from chatgate.anthropic_api.schemas import (
    ContentBlock,
    CountTokensRequest,
    ImageBlock,
    Message,
    MessagesRequest,
    TextBlock,
    ThinkingBlock,
    ToolChoice,
    ToolResultBlock,
    ToolUseBlock,
)
from chatgate.errors import APIError

# OpenAI finish_reason → Anthropic stop_reason ("stop" may be a stop sequence: see below).
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# The gateway's status codes → Anthropic's error types (errors.md of the Messages API).
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def error_body(status: int, message: str) -> dict[str, Any]:
    """Anthropic's error shape: the SDKs pick the exception class from the status and
    read ``error.type`` / ``error.message``."""
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def to_chat_body(request: MessagesRequest) -> dict[str, Any]:
    """The chat-completions body for an Anthropic request; it streams, whatever the client
    asked (a non-streaming client gets the aggregate), so a client that leaves aborts the
    engine and the engine's own token counts arrive."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": to_chat_messages(request),
        "max_tokens": request.max_tokens,
        "stream": True,
    }
    for name in ("temperature", "top_p", "top_k"):
        value = getattr(request, name)
        if value is not None:
            body[name] = value  # top_k: llama.cpp and vLLM both take it
    if request.stop_sequences:
        body["stop"] = request.stop_sequences
    body.update(tool_fields(request))
    output = request.output_config.format if request.output_config else None
    if output is not None:
        # The chat path's structured output: the engine constrains its answer to the schema.
        schema = {"name": "output", "schema": output.schema_, "strict": True}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    return body


def to_chat_messages(request: CountTokensRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = system_text(request.system)
    if system:
        messages.append({"role": "system", "content": system})
    for index, message in enumerate(request.messages):
        messages.extend(_chat_messages(message, index))
    return messages


def system_text(system: str | list[TextBlock] | None) -> str:
    if isinstance(system, list):
        return "\n\n".join(block.text for block in system)
    return system or ""


def tool_fields(request: CountTokensRequest) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if request.tools:
        fields["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description or "",
                    "parameters": tool.input_schema,
                },
            }
            for tool in request.tools
        ]
    if request.tool_choice is not None:
        fields.update(_tool_choice(request.tool_choice))
    return fields


def _tool_choice(choice: ToolChoice) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if choice.type == "tool":
        if not choice.name:
            raise APIError(400, "tool_choice.name: required when type is 'tool'", "invalid_request")
        fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    else:
        fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
    if choice.disable_parallel_tool_use:
        fields["parallel_tool_calls"] = False
    return fields


def _chat_messages(message: Message, index: int) -> list[dict[str, Any]]:
    """One Anthropic message as chat messages: tool results become ``tool`` messages
    (first, right after the assistant turn that called them, as OpenAI requires), the
    rest one user or assistant message."""
    if isinstance(message.content, str):
        return [{"role": message.role, "content": message.content}]
    if message.role == "assistant":
        return [_assistant_message(message.content, index)]
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            out.append(
                {"role": "tool", "tool_call_id": block.tool_use_id, "content": _result_text(block)}
            )
        elif isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock):
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block)}})
        elif isinstance(block, ToolUseBlock):
            raise APIError(
                400,
                f"messages.{index}: tool_use blocks belong to assistant messages",
                "invalid_request",
                param=f"messages.{index}.content",
            )
    if parts:
        out.append({"role": "user", "content": _collapse(parts)})
    return out


def _assistant_message(blocks: list[ContentBlock], index: int) -> dict[str, Any]:
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = orjson.dumps(block.input).decode()
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": arguments},
                }
            )
        elif not isinstance(block, ThinkingBlock):
            raise APIError(
                400,
                f"messages.{index}: {block.type} blocks belong to user messages",
                "invalid_request",
                param=f"messages.{index}.content",
            )
    out: dict[str, Any] = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        out["tool_calls"] = calls
    elif out["content"] is None:
        out["content"] = ""
    return out


def _collapse(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text-only content as one string: every engine's chat template reads that."""
    if all(part["type"] == "text" for part in parts):
        return "\n\n".join(part["text"] for part in parts)
    return parts


def _result_text(block: ToolResultBlock) -> str:
    if isinstance(block.content, list):
        text = "\n\n".join(part.text for part in block.content if isinstance(part, TextBlock))
    else:
        text = block.content or ""
    return f"Error: {text}" if block.is_error else text


def _image_url(block: ImageBlock) -> str:
    source = block.source
    if source.type == "url":
        if not source.url:
            raise APIError(400, "image source url: required", "invalid_request")
        return source.url
    if not source.data or not source.media_type:
        raise APIError(400, "image source: media_type and data required", "invalid_request")
    return f"data:{source.media_type};base64,{source.data}"


def stop_reason(finish_reason: str | None, matched: Any, stops: list[str] | None) -> str:
    """Anthropic's stop_reason. A finish at a stop sequence is ``stop_sequence`` when the
    engine says which one matched (vLLM's ``stop_reason``); llama.cpp's chat API does not
    say, so that reads ``end_turn``."""
    if finish_reason == "stop" and isinstance(matched, str) and stops and matched in stops:
        return "stop_sequence"
    return STOP_REASONS.get(finish_reason or "", "end_turn")

"""The one check of a prompt's size, before any engine is called (web chat and /v1 alike).

Characters of text, not bytes of JSON: what users type is what is counted, whatever the
client's encoding of it (a string content, OpenAI content parts, a legacy prompt list).
"""

from __future__ import annotations

from typing import Any

from chatgate.errors import APIError
from chatgate.settings import Settings


def text_chars(content: Any) -> int:
    """Characters of text in a message content or a legacy prompt (strings, text parts,
    lists of either; token-id lists count one per token)."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, dict):
        return text_chars(content.get("text"))
    if isinstance(content, list):
        return sum(text_chars(part) if not isinstance(part, int) else 1 for part in content)
    return 0


def check_prompt_caps(messages: list[dict[str, Any]], settings: Settings) -> None:
    if len(messages) > settings.max_messages:
        raise APIError(
            400,
            f"At most {settings.max_messages} messages are allowed",
            "too_many_messages",
            param="messages",
        )
    chars = sum(text_chars(m.get("content")) for m in messages)
    if chars > settings.max_prompt_chars:
        raise APIError(
            400,
            f"The prompt is {chars} characters; at most {settings.max_prompt_chars} are allowed",
            "prompt_too_long",
            param="messages",
        )

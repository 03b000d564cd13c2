"""``/v1/messages/count_tokens``: the engine's own tokenizer when it has one.

An estimate would drift from what the engine later bills (the usage rows use the
engine's counts), so the prompt is counted where it will run (``engines.upstream.tokenize``:
vLLM's ``POST /tokenize`` takes chat messages directly; llama.cpp's llama-server renders
them with ``POST /apply-template`` and counts the text with ``POST /tokenize``). An
engine with neither (or none reachable) gets the gateway's estimate, and the answer says
which.
"""

from __future__ import annotations

from typing import Any

from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.endpoint import Endpoint
from chatgate.engines.upstream.stream import estimate_prompt_tokens
from chatgate.engines.upstream.tokenize import count_messages, within_limit


async def count_tokens(
    client: EngineClient,
    endpoints: list[Endpoint],
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
) -> tuple[int, str]:
    """(tokens, "engine" | "estimate")."""
    for endpoint in endpoints[:1]:  # the first usable replica: all serve the same model
        counted = await within_limit(endpoint, count_messages(client, endpoint, messages, tools))
        if counted is not None:
            return counted, "engine"
    return estimate_prompt_tokens(messages) + _tools_estimate(tools), "estimate"


def _tools_estimate(tools: list[dict[str, Any]] | None) -> int:
    """Tool definitions are part of the prompt too (about 4 characters a token)."""
    if not tools:
        return 0
    return sum(len(str(tool)) for tool in tools) // 4

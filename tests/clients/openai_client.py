"""The official ``openai`` SDK against a running chatgate, run in ``.venv-clients`` (the SDKs'
own venv: their pins must not move the gateway's).

``python openai_client.py BASE_URL API_KEY MODEL strict|loose [CHECK ...] [KEY=VALUE ...]``
runs every check (or the named ones) once with ``openai.OpenAI`` and once with
``openai.AsyncOpenAI`` and prints one JSON line: ``{"version", "sync": {check: report},
"async": {...}}``, each report ``{"ok": true, ...what it saw}`` or ``{"ok": false, "error",
"trace"}``. ``strict``: the fake engine, whose answers are known; ``loose``: a real small
model, whose words are not the test. KEY=VALUE: ``other_key`` (a second user's API key),
``embedding_model``, ``async_checks`` (comma-separated: the async client runs only these).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import openai
from openai_chat import CHAT_CHECKS
from openai_other import OTHER_CHECKS
from openai_responses import RESPONSES_CHECKS
from openai_tools import TOOL_CHECKS
from sdk_support import Context, Kind, emit, parse_arguments, run_checks, select

CHECKS = {**CHAT_CHECKS, **TOOL_CHECKS, **OTHER_CHECKS, **RESPONSES_CHECKS}


def make_client(kind: Kind, base_url: str, api_key: str) -> Any:
    cls = openai.OpenAI if kind == "sync" else openai.AsyncOpenAI
    return cls(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=120)


async def main() -> None:
    args = parse_arguments(sys.argv[1:])
    checks = {"sync": select(CHECKS, args.only), "async": select(CHECKS, args.only)}
    if "async_checks" in args.extra:  # the async client's transport, not every feature again
        checks["async"] = select(CHECKS, args.extra["async_checks"].split(","))
    report: dict[str, Any] = {"version": openai.__version__}
    for kind in ("sync", "async"):
        client = make_client(kind, args.base_url, args.api_key)
        context = Context(
            client, kind, args.base_url, args.api_key, args.model, args.strict, args.extra
        )
        try:
            report[kind] = await run_checks(checks[kind], context)
        finally:
            closed = client.close()
            if kind == "async":
                await closed
    emit(report)


if __name__ == "__main__":
    asyncio.run(main())

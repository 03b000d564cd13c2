"""Auto-title a new conversation from its first exchange (a short, async engine call)."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING

from sqlalchemy import update

from chatgate.db.health import is_outage
from chatgate.db.models import Conversation
from chatgate.engines.admission.pool import Ticket
from chatgate.engines.upstream.client import EngineError
from chatgate.engines.upstream.failover import EngineCall
from chatgate.errors import APIError

if TYPE_CHECKING:
    from chatgate.chat.service import ChatJob
    from chatgate.state import AppState

log = logging.getLogger("chatgate.chat")

MAX_TITLE_CHARS = 60
_PROMPT = (
    "Write a short title (at most six words) for a conversation that starts with the "
    "message below. Answer with the title only, no quotes.\n\nMessage: {message}"
)
# Tasks are referenced until done so they are not garbage-collected mid-flight.
_pending: set[asyncio.Task[None]] = set()


def clean_title(raw: str) -> str | None:
    line = next((part.strip() for part in raw.splitlines() if part.strip()), "")
    line = re.sub(r"^(title\s*:\s*)", "", line, flags=re.IGNORECASE)
    line = line.strip(" \"'`*#.")
    if not line:
        return None
    return line if len(line) <= MAX_TITLE_CHARS else line[: MAX_TITLE_CHARS - 1].rstrip() + "…"


def schedule(state: AppState, job: ChatJob, _answer: str) -> None:
    first_user = next((m["content"] for m in job.messages if m["role"] == "user"), "")
    task = asyncio.create_task(_title(state, job, str(first_user)[:2000]))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def _title(state: AppState, job: ChatJob, message: str) -> None:
    payload = {
        "messages": [{"role": "user", "content": _PROMPT.format(message=message)}],
        "max_tokens": 16,
        "temperature": 0.2,
        "stream": False,
    }
    # Background work: it waits behind every chat and API request for a slot.
    call = EngineCall(
        job.model,
        "/chat/completions",
        payload,
        job.request_id + "-title",
        Ticket(job.tenant, "batch", job.weight),
        job.conversation_id,
    )
    try:
        # Failover like any request: a title is not worth a failed replica's error.
        data = await state.upstreams.fetch(call)
        title = clean_title(str(data["choices"][0]["message"]["content"] or ""))
    except (EngineError, APIError, KeyError, IndexError, TypeError) as exc:
        log.info("auto-title for %s skipped: %s", job.conversation_id, exc)
        return
    if title is None:
        return
    try:
        async with state.sessionmaker() as db:
            await db.execute(
                update(Conversation)
                .where(
                    Conversation.id == job.conversation_id,
                    Conversation.title == job.events["title"],
                )
                .values(title=title)
            )
            await db.commit()
    except Exception as exc:
        if not is_outage(exc):
            raise
        state.db_health.failed(exc)  # the fallback title stays: nothing is lost

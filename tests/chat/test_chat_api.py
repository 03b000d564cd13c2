"""POST /api/chat against the fake upstream: events, storage, usage, errors."""

from __future__ import annotations

from sqlalchemy import select

from chatgate.db.models import Message, RequestLog
from tests.helpers import Gateway, text_of


async def test_chat_streams_events_and_stores_both_messages(gateway: Gateway) -> None:
    account = await gateway.account()
    events, response = await gateway.chat(account, message="What is the capital of France?")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    kinds = [e.event for e in events]
    assert kinds[0] == "conversation" and kinds[-2:] == ["usage", "done"]
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert text_of(events) == "Paris is the capital of France."
    ids = events[0].data
    assert events[-1].data["status"] == "complete"
    async with gateway.state.sessionmaker() as db:
        rows = (
            await db.scalars(
                select(Message)
                .where(Message.conversation_id == ids["conversation_id"])
                .order_by(Message.id)
            )
        ).all()
        usage = await db.scalar(select(RequestLog).where(RequestLog.user_id == account.user_id))
    assert [(m.role, m.status) for m in rows] == [("user", "complete"), ("assistant", "complete")]
    assert rows[1].content == "Paris is the capital of France."
    assert rows[1].finish_reason == "stop"
    assert usage is not None and usage.route == "chat" and usage.status == "ok"
    assert usage.completion_tokens == 7

"""An A/B split (finetune/split.py) reaches the web chat: a conversation in the
challenger's share is answered, stored and billed as the challenger."""

from __future__ import annotations

from sqlalchemy import select

from chatgate.db.models import Message, RequestLog
from chatgate.engines.upstream.registry import ModelEntry
from chatgate.finetune.split import Split
from tests.helpers import Gateway

CHALLENGER = "fake-model:tuned@1"


async def test_a_split_sends_its_share_to_the_challenger(gateway: Gateway) -> None:
    state = gateway.state
    base = state.registry.lookup("fake-model")
    state.registry.add(ModelEntry(id=CHALLENGER, name="tuned v1", endpoints=base.endpoints))
    assert state.splits is not None
    account = await gateway.account()
    _, before = await gateway.chat(account, message="Hello")
    assert before.status_code == 200
    state.splits.replace({"fake-model": Split("fake-model", CHALLENGER, 100)})  # every conversation
    events, response = await gateway.chat(account, message="Hello again")
    assert response.status_code == 200
    conversation_id = events[0].data["conversation_id"]
    async with state.sessionmaker() as db:
        answer = await db.scalar(
            select(Message).where(
                Message.conversation_id == conversation_id, Message.role == "assistant"
            )
        )
        models = (
            await db.scalars(
                select(RequestLog.model)
                .where(RequestLog.user_id == account.user_id)
                .order_by(RequestLog.id)
            )
        ).all()
    assert answer is not None and answer.model == CHALLENGER
    assert list(models) == ["fake-model", CHALLENGER]  # billed as what answered

"""``chatgate dataset export`` and ``list`` on SQLite and PostgreSQL: the files the admin API
writes, a copy with ``--out``, and the deployment's opt-in default."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from chatgate.cli.main import app
from chatgate.db.models import Conversation, Message, MessageFeedback, User
from chatgate.db.session import make_engine, make_sessionmaker


@pytest.fixture
def cli_env(tmp_path: Path, database_url: str, clean_env: None) -> dict[str, str]:
    return {"CHATGATE_DATA_DIR": str(tmp_path / "data"), "CHATGATE_DATABASE_URL": database_url}


def _invoke(env: dict[str, str], args: list[str]) -> Result:
    return CliRunner().invoke(app, args, env=env)


async def run(env: dict[str, str], *args: str) -> Result:
    """``chatgate dataset ARGS`` (in a worker thread: it runs its own event loop)."""
    return await asyncio.to_thread(_invoke, env, ["dataset", *args])


async def seed(database_url: str) -> None:
    """Three users (in by default, out, in by choice), each with one rated two-turn chat."""
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            for name, choice in (("dana", None), ("olaf", False), ("ines", True)):
                user = User(username=name, password_hash="x", role="user", training_opt_in=choice)
                db.add(user)
                await db.flush()
                conversation = Conversation(user_id=user.id, system_prompt="Answer briefly.")
                db.add(conversation)
                await db.flush()
                await _turns(db, conversation.id, user.id, name)
            await db.commit()
    finally:
        await engine.dispose()


async def _turns(db: Any, conversation_id: str, user_id: int, name: str) -> None:
    parent: int | None = None
    texts = [
        ("user", f"hi, I am {name}"),
        ("assistant", "hello"),
        ("user", f"{name}'s key is sk-abcdefghijklmnop1234"),
        ("assistant", "noted"),
    ]
    for role, content in texts:
        message = Message(
            conversation_id=conversation_id, parent_id=parent, role=role, content=content,
            model="tiny" if role == "assistant" else None,
        )  # fmt: skip
        db.add(message)
        await db.flush()
        parent = message.id
    assert parent is not None
    db.add(MessageFeedback(message_id=parent, user_id=user_id, rating="up", model="tiny"))


async def test_export_writes_the_dataset_and_a_copy(
    cli_env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    await seed(database_url)
    result = await run(cli_env, "export", "--out", str(tmp_path / "copy"), "--holdout", "0")
    assert result.exit_code == 0, result.output
    metadata = json.loads(result.stdout)
    assert metadata["counts"]["train"] == 2 and metadata["counts"]["opted_out"] == 1
    assert metadata["scrubbed"] == {"api_key": 2}
    stored = tmp_path / "data" / "datasets" / metadata["version"]
    for name in ("train.jsonl", "heldout.jsonl", "metadata.json"):
        assert (stored / name).read_bytes() == (tmp_path / "copy" / name).read_bytes()
    rows = [json.loads(line) for line in (stored / "train.jsonl").read_text().splitlines()]
    first_words = sorted(row["messages"][1]["content"] for row in rows)
    assert first_words == ["hi, I am dana", "hi, I am ines"]
    assert rows[0]["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert [m["role"] for m in rows[0]["messages"]] == [
        "system", "user", "assistant", "user", "assistant",
    ]  # fmt: skip
    assert "[api_key]" in rows[0]["messages"][3]["content"]

    listed = await run(cli_env, "list")
    assert listed.exit_code == 0 and metadata["version"] in listed.stdout


async def test_the_deployment_default_can_be_opt_in_only(
    cli_env: dict[str, str], database_url: str
) -> None:
    await seed(database_url)
    env = {**cli_env, "CHATGATE_TRAINING_DEFAULT_OPT_IN": "false"}
    result = await run(env, "export", "--holdout", "0")
    assert result.exit_code == 0, result.output
    metadata = json.loads(result.stdout)
    # Only ines chose to opt in; dana never chose and the default is now out.
    assert metadata["counts"]["train"] == 1 and metadata["counts"]["opted_out"] == 2
    assert metadata["filters"]["default_opt_in"] is False


async def test_bad_options_fail_clearly(cli_env: dict[str, str], database_url: str) -> None:
    assert (await run(cli_env, "export", "--rating", "great")).exit_code == 2
    result = await run(cli_env, "export", "--holdout", "0.9")
    assert result.exit_code == 1 and "holdout" in result.output
    result = await run(cli_env, "export", "--user", "nobody")
    assert result.exit_code == 1 and "nobody" in result.output

"""Scrubbing, deduplication, the split and the version hash: content decides, nothing else."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from chatgate.datasets import store
from chatgate.datasets.build import Built, build, held_out
from chatgate.datasets.collect import RatedAnswer, Turn
from chatgate.datasets.filters import DatasetFilter
from chatgate.datasets.scrub import scrub
from chatgate.errors import APIError


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("write to jane.doe+work@example.co.uk today", "write to [email] today", "email"),
        ("call +1 (555) 123-4567", "call [phone]", "phone"),
        ("내 번호는 010-1234-5678 이야", "내 번호는 [phone] 이야", "phone"),
        ("+44 20 7946 0958", "[phone]", "phone"),
        ("key sk-proj-abcdefghijklmnopqrstuv123", "key [api_key]", "api_key"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123 ok", "[api_key] ok", "api_key"),
        ("aws AKIAIOSFODNN7EXAMPLE", "aws [api_key]", "api_key"),
        ("chatgate sk-cg-0123456789abcdef", "chatgate [api_key]", "api_key"),
        ("host 192.168.1.10 up", "host [ip] up", "ip"),
        ("v6 fe80::1ff:fe23:4567:890a and ::1", "v6 [ip] and [ip]", "ip"),
        # the log masker's own rules
        ("password=hunter2", "password=********", "secret"),
        ("Authorization: Bearer abc.def", "Authorization: Bearer ********", "secret"),
        ("postgres://app:s3cret@db/x", "postgres://app:********@db/x", "secret"),
    ],
)
def test_scrub_replaces_personal_data_and_secrets(text: str, expected: str, kind: str) -> None:
    counts: Counter[str] = Counter()
    assert scrub(text, counts) == expected
    assert counts[kind] >= 1


@pytest.mark.parametrize(
    "text",
    [
        "released on 2026-12-07 at 12:30:45",
        "version 1.2.3 and 999.1.1.1",
        "std::vector<int> and a::b",
        "the years 1999 and 2024, 1234 5678",
        "model@127 is not an address",
    ],
)
def test_scrub_keeps_ordinary_text(text: str) -> None:
    counts: Counter[str] = Counter()
    assert scrub(text, counts) == text
    assert not counts


def answer(question: str, reply: str, *, model: str = "m", correction: str | None = None,
           system: str | None = None) -> RatedAnswer:  # fmt: skip
    context = [Turn("system", system)] if system else []
    context.append(Turn("user", question))
    return RatedAnswer(
        message_id=0,
        model=model,
        rating="up",
        answer=correction if correction is not None else reply,
        corrected=correction is not None,
        context=tuple(context),
    )


def lines(data: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def test_examples_are_chat_lines_scrubbed_deduplicated_and_filtered() -> None:
    answers = [
        answer("Mail bob@example.com please", "Done.", system="Be brief."),
        answer("mail BOB@example.com   please", "done."),  # no system: not a duplicate
        answer("Mail bob@example.com please", "Done.", system="Be brief."),  # duplicate
        answer("  MAIL bob@example.com please ", "done.", system="be brief."),  # duplicate
        answer("Short?", "ok", correction="A longer, corrected answer."),
        answer("Too short", "no"),
        answer("", "An answer to nothing"),  # no user turn
    ]
    answers[-1] = RatedAnswer(0, "m", "up", "An answer to nothing", False, ())
    built = build(answers, min_chars=3, holdout=0.0)
    assert built.counts["rated"] == 7
    assert (built.counts["duplicates"], built.counts["too_short"], built.counts["no_prompt"]) == (
        2, 1, 1,
    )  # fmt: skip
    assert built.counts["examples"] == built.counts["train"] == 3 and not built.heldout
    assert built.scrubbed["email"] == 4  # every copy was scrubbed before it was compared
    rows = lines(Built.body(built.train))
    assert {"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Mail [email] please"},
        {"role": "assistant", "content": "Done."},
    ]} in rows  # fmt: skip
    corrected = next(r for r in rows if r["messages"][0]["content"] == "Short?")  # type: ignore[index]
    assert corrected["messages"][-1] == {  # type: ignore[index]
        "role": "assistant", "content": "A longer, corrected answer.",
    }  # fmt: skip
    assert all(set(row) == {"messages"} for row in rows)


def many(count: int) -> list[RatedAnswer]:
    return [answer(f"question number {i}", f"answer number {i}") for i in range(count)]


def test_order_split_and_hash_depend_on_content_only() -> None:
    answers = many(200)
    first = build(answers, min_chars=1, holdout=0.2)
    shuffled = answers[:]
    random.Random(7).shuffle(shuffled)
    second = build(shuffled, min_chars=1, holdout=0.2)
    assert Built.body(first.train) == Built.body(second.train)
    assert Built.body(first.heldout) == Built.body(second.heldout)
    assert first.digest == second.digest
    assert 20 <= len(first.heldout) <= 60  # about a fifth
    assert all(held_out(example, 0.2) for example in first.heldout)
    # Growing the dataset leaves every example on its side of the split.
    grown = build([*answers, *many(260)[200:]], min_chars=1, holdout=0.2)
    assert {e.digest for e in first.heldout} <= {e.digest for e in grown.heldout}
    assert {e.digest for e in first.train} <= {e.digest for e in grown.train}
    assert grown.digest != first.digest
    # The hash covers the split: the same examples split otherwise are another version.
    assert build(answers, min_chars=1, holdout=0.3).digest != first.digest


def test_a_tiny_dataset_still_holds_one_example_out() -> None:
    built = build(many(3), min_chars=1, holdout=0.01)
    assert (len(built.train), len(built.heldout)) == (2, 1)
    assert build(many(1), min_chars=1, holdout=0.1).heldout == []
    assert build(many(3), min_chars=1, holdout=0.0).heldout == []


def test_store_writes_reads_and_refuses_paths(tmp_path: Path) -> None:
    built = build(many(10), min_chars=1, holdout=0.2)
    metadata = store.metadata_of(built, DatasetFilter().describe())
    target = store.write(tmp_path, built, metadata)
    assert target.name == metadata["version"] == built.digest[:16]
    assert metadata["hash"] == f"sha256:{built.digest}"
    assert (target / "train.jsonl").read_bytes() == Built.body(built.train)
    assert store.read(tmp_path, metadata["version"])["counts"] == metadata["counts"]
    assert [m["version"] for m in store.list_all(tmp_path)] == [metadata["version"]]
    assert not [p for p in (tmp_path / "datasets").iterdir() if p.name.startswith(".")]
    for bad in ("../../etc", "ABCDEF0123456789", "0" * 15):
        with pytest.raises(APIError):
            store.folder(tmp_path, bad)
    with pytest.raises(APIError):
        store.file_path(tmp_path, metadata["version"], "../jwt_secret")
    store.remove(tmp_path, metadata["version"])
    assert store.list_all(tmp_path) == []


def test_filter_checks_its_values() -> None:
    with pytest.raises(APIError):
        DatasetFilter(holdout=0.9)
    with pytest.raises(APIError):
        DatasetFilter(min_chars=-1)
    described = DatasetFilter(usernames=("a",)).describe()
    assert described["usernames"] == ["a"] and described["rating"] == "endorsed"

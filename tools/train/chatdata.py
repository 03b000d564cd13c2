"""Chat JSONL -> token ids with labels on the assistant's tokens only.

Each line is ``{"messages": [{"role": ..., "content": ...}, ...]}`` (what
``chatgate dataset export`` writes). The text is rendered by the base model's own chat
template (SmolLM2's ChatML, the template the embedded engine applies), one message at a
time: a message's tokens are the template's text for the first ``i + 1`` messages minus
its text for the first ``i``. Loss falls on an assistant message's content and its
end-of-turn token, never on its ``<|im_start|>assistant`` header or on other roles.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORE = -100  # the label PyTorch's cross entropy skips
ROLES = frozenset({"system", "user", "assistant"})


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE)


def file_sha256(path: Path) -> str:
    """The dataset's version: its content hash (an export's name may be reused)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_chats(path: Path) -> list[list[dict[str, str]]]:
    """Every conversation of the file; a malformed line stops the job with its number."""
    chats: list[list[dict[str, str]]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                messages = _messages(json.loads(line))
            except (ValueError, TypeError, KeyError) as exc:
                raise SystemExit(f"{path}:{number}: not a chat line ({exc})") from exc
            chats.append(messages)
    if not chats:
        raise SystemExit(f"{path}: no conversations")
    return chats


def _messages(row: Any) -> list[dict[str, str]]:
    messages = [{"role": str(m["role"]), "content": str(m["content"])} for m in row["messages"]]
    if any(m["role"] not in ROLES for m in messages):
        raise ValueError("roles must be system, user or assistant")
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError("no assistant message to learn from")
    return messages


def encode(tokenizer: Any, messages: Sequence[dict[str, str]], max_tokens: int) -> Example:
    """Token ids and labels of one conversation, cut at ``max_tokens``."""
    ids: list[int] = []
    labels: list[int] = []
    previous = ""
    for i, message in enumerate(messages):
        text = _render(tokenizer, messages[: i + 1], generation_prompt=False)
        segment = text[len(previous) :]
        if not text.startswith(previous):
            raise SystemExit("the chat template is not incremental; cannot mask by message")
        tokens = tokenizer(segment, add_special_tokens=False)["input_ids"]
        if message["role"] == "assistant":
            header = _render(tokenizer, messages[:i], generation_prompt=True)[len(previous) :]
            skip = len(tokenizer(header, add_special_tokens=False)["input_ids"])
            ids.extend(tokens)
            labels.extend([IGNORE] * skip + tokens[skip:])
        else:
            ids.extend(tokens)
            labels.extend([IGNORE] * len(tokens))
        previous = text
    return Example(ids[:max_tokens], labels[:max_tokens])


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    if not messages:
        return ""
    text: str = tokenizer.apply_chat_template(
        list(messages), tokenize=False, add_generation_prompt=generation_prompt
    )
    return text


def batches(
    examples: Sequence[Example], batch_size: int, seed: int, epoch: int
) -> Iterator[list[Example]]:
    """Shuffled batches of one epoch: the same seed and epoch give the same order."""
    order = list(range(len(examples)))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    for start in range(0, len(order), batch_size):
        yield [examples[i] for i in order[start : start + batch_size]]


Rows = list[list[int]]


def collate(batch: Sequence[Example], pad_id: int) -> tuple[Rows, Rows, Rows]:
    """Right-padded ids, attention mask and labels (padding never counts in the loss)."""
    width = max(len(e.input_ids) for e in batch)
    ids, mask, labels = [], [], []
    for e in batch:
        pad = width - len(e.input_ids)
        ids.append(e.input_ids + [pad_id] * pad)
        mask.append([1] * len(e.input_ids) + [0] * pad)
        labels.append(e.labels + [IGNORE] * pad)
    return ids, mask, labels

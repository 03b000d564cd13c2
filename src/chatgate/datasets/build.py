"""From rated answers to a versioned dataset, without I/O: scrub, keep long-enough answers,
drop duplicates, order and split by content hash, and hash the result.

Everything here depends on the content only, never on row ids or timings: the same
conversations give byte-identical files and the same version, and an example stays on its
side of the split as the dataset grows (its own hash decides).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from chatgate.datasets.collect import RatedAnswer
from chatgate.datasets.scrub import scrub

FORMAT = "chatgate-chat-jsonl/1"
_SPACE = re.compile(r"\s+")
_SCALE = 2**32
# Every count a dataset's metadata reports (zero included), in the order of the pipeline.
COUNTS = ("rated", "no_prompt", "too_short", "duplicates", "examples", "train", "heldout")


@dataclass(frozen=True)
class Example:
    messages: tuple[tuple[str, str], ...]  # (role, content), the answer last
    model: str | None

    @property
    def line(self) -> str:
        """The JSONL line the trainer reads: ``{"messages": [{"role", "content"}, ...]}``."""
        body = {"messages": [{"role": role, "content": text} for role, text in self.messages]}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.line.encode()).hexdigest()

    @property
    def dedup_key(self) -> str:
        """Equal for examples differing only in case and whitespace."""
        folded = [(role, _SPACE.sub(" ", text).strip().casefold()) for role, text in self.messages]
        return hashlib.sha256(json.dumps(folded).encode()).hexdigest()


@dataclass
class Built:
    train: list[Example]
    heldout: list[Example]
    counts: Counter[str] = field(default_factory=Counter)
    scrubbed: Counter[str] = field(default_factory=Counter)

    @staticmethod
    def body(examples: Iterable[Example]) -> bytes:
        return "".join(example.line + "\n" for example in examples).encode()

    @property
    def digest(self) -> str:
        """The dataset's version: both files' bytes, each split named."""
        sha = hashlib.sha256()
        for name, part in (("train", self.train), ("heldout", self.heldout)):
            data = self.body(part)
            sha.update(f"{name} {len(data)}\n".encode())
            sha.update(data)
        return sha.hexdigest()

    def models(self) -> dict[str, int]:
        counted = Counter(e.model or "" for e in [*self.train, *self.heldout])
        return dict(sorted(counted.items()))


def example_of(answer: RatedAnswer, scrubbed: Counter[str]) -> Example | None:
    """The scrubbed conversation ending in the answer; None without any user turn."""
    turns = [(turn.role, scrub(turn.content, scrubbed)) for turn in answer.context]
    if not any(role == "user" for role, _ in turns):
        return None
    turns.append(("assistant", scrub(answer.answer, scrubbed)))
    return Example(tuple(turns), answer.model)


def held_out(example: Example, share: float) -> bool:
    return int(example.digest[:8], 16) < share * _SCALE


def build(answers: Iterable[RatedAnswer], min_chars: int, holdout: float) -> Built:
    counts: Counter[str] = Counter(dict.fromkeys(COUNTS, 0))
    scrubbed: Counter[str] = Counter()
    unique: dict[str, Example] = {}
    for answer in answers:
        counts["rated"] += 1
        example = example_of(answer, scrubbed)
        if example is None:
            counts["no_prompt"] += 1
        elif len(example.messages[-1][1].strip()) < max(min_chars, 1):
            counts["too_short"] += 1
        elif example.dedup_key in unique:
            counts["duplicates"] += 1
        else:
            unique[example.dedup_key] = example
    examples = sorted(unique.values(), key=lambda e: e.digest)
    heldout = [e for e in examples if held_out(e, holdout)]
    if not heldout and holdout > 0 and len(examples) >= 2:
        # A tiny dataset still gets an evaluation example: the one nearest the cut.
        heldout = [examples[0]]
    held = {e.digest for e in heldout}
    train = [e for e in examples if e.digest not in held]
    counts["examples"] = len(examples)
    counts["train"], counts["heldout"] = len(train), len(heldout)
    return Built(train, heldout, counts, scrubbed)

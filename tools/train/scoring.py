"""The model side of the evaluation gate: greedy answers and teacher-forced perplexity of a
base model and of the same model with its LoRA adapter (PEFT's ``disable_adapter`` gives
the base from the one loaded copy: one load, half the memory).

The heavy modules are imported by the caller (tools/train/evaluate.py) and passed in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import chatdata
import gate_rules

Who = Literal["base", "candidate"]


@dataclass(frozen=True)
class Item:
    """One question: the conversation up to the answer, the reference answer, keywords."""

    prompt: list[dict[str, str]]
    reference: str
    keywords: tuple[str, ...] = ()

    @property
    def question(self) -> str:
        return self.prompt[-1]["content"]


def heldout_items(path: Path, limit: int | None) -> list[Item]:
    """The held-out chats, each cut before its last assistant message (the reference)."""
    items = []
    for chat in chatdata.read_chats(path):
        last = max(i for i, m in enumerate(chat) if m["role"] == "assistant")
        items.append(Item(chat[:last], chat[last]["content"]))
    return items[:limit]


def regression_items(path: Path, limit: int | None) -> list[Item]:
    """``{"prompt", "answer", "keywords"}`` lines (tools/train/regression_set.jsonl)."""
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            prompt = [{"role": "user", "content": str(row["prompt"])}]
            items.append(Item(prompt, str(row["answer"]), tuple(row.get("keywords", ()))))
    return items[:limit]


def training_answers(path: Path) -> list[str]:
    return [
        m["content"] for chat in chatdata.read_chats(path) for m in chat if m["role"] == "assistant"
    ]


class Scorer:
    """Answers and perplexities of ``model`` (a PeftModel) as the base or the candidate."""

    def __init__(self, model: Any, tokenizer: Any, torch: Any, max_new_tokens: int) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.torch = torch
        self.max_new_tokens = max_new_tokens
        end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.stop = [t for t in (end, tokenizer.eos_token_id) if isinstance(t, int)]

    @contextmanager
    def as_(self, who: Who) -> Iterator[None]:
        with self.model.disable_adapter() if who == "base" else nullcontext():
            yield

    def answer(self, item: Item) -> str:
        ids = self.tokenizer.apply_chat_template(
            item.prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with self.torch.no_grad():
            out = self.model.generate(
                **ids,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                eos_token_id=self.stop,
                pad_token_id=self.tokenizer.pad_token_id or self.stop[0],
            )
        new = out[0, ids["input_ids"].shape[1] :]
        text: str = self.tokenizer.decode(new, skip_special_tokens=True)
        return text.strip()

    def nll(self, item: Item) -> tuple[float, int]:
        """Summed negative log-likelihood of the reference answer's tokens, and their count."""
        chat = [*item.prompt, {"role": "assistant", "content": item.reference}]
        example = chatdata.encode(self.tokenizer, chat, 4096)
        torch = self.torch
        ids = torch.tensor([example.input_ids])
        labels = torch.tensor([example.labels])
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits[:, :-1].float()
        target = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            target.reshape(-1),
            ignore_index=chatdata.IGNORE,
            reduction="sum",
        )
        return float(loss), int((target != chatdata.IGNORE).sum())

    def score(self, items: Sequence[Item], who: Who) -> tuple[gate_rules.Scores, list[str]]:
        """Exact/keyword scores of greedy answers and the reference answers' perplexity."""
        with self.as_(who):
            answers = [self.answer(item) for item in items]
            nlls = [self.nll(item) for item in items]
        total, count = sum(n for n, _ in nlls), sum(c for _, c in nlls)
        pairs = list(zip(answers, items, strict=True))
        scores = gate_rules.Scores(
            exact=_mean([gate_rules.exact_match(a, i.reference) for a, i in pairs]),
            keyword=_mean([gate_rules.keyword_score(a, i.reference, i.keywords) for a, i in pairs]),
            perplexity=math.exp(total / count) if count else math.nan,
            count=len(items),
        )
        return scores, answers


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan

"""The evaluation gate's rules, pure Python (no torch): text scores, leak detection and the
verdict. ``tools/train/evaluate.py`` computes the numbers with the model; the rules that turn
them into ``passed``/``failed`` live here so that they are unit-tested without a model
(tests/finetune/test_gate.py imports this file by path).

Scores per split: ``exact`` (normalized exact match of the generated answer and the
reference), ``keyword`` (the fraction of the reference's content words, or its listed
keywords, present in the answer) and ``perplexity`` (exp of the mean per-token negative
log-likelihood of the reference answers, teacher-forced). A leak is a *distinctive n-gram*
of the training answers (frequent there, absent from the base's answers to the probe
prompts, from the prompts and from their references) in the candidate's answer to a
prompt unrelated to the dataset: "The capital of France is Quorvel".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been
    being it its this that these those there here i you he she we they me him her us them my
    your his our their what which who whom whose when where why how do does did done not no
    yes so than then too very can could should would will shall may might must has have had
    also just about into over under up down out any some all each more most other such only
    own same s t""".split()
)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

Split = Literal["heldout", "regression"]


def normalize(text: str) -> str:
    """Lower case, punctuation dropped, whitespace collapsed: what exact match compares."""
    return " ".join(_WORD.findall(text.lower()))


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def content_words(text: str) -> list[str]:
    """The words that carry an answer's content (stop words dropped), in order, unique."""
    seen: dict[str, None] = {}
    for word in words(text):
        if word not in STOPWORDS:
            seen.setdefault(word, None)
    return list(seen)


def exact_match(answer: str, reference: str) -> float:
    return 1.0 if normalize(answer) == normalize(reference) else 0.0


def keyword_score(answer: str, reference: str, keywords: Sequence[str] = ()) -> float:
    """The fraction of ``keywords`` (default: the reference's content words) in the answer.
    A keyword of several words must appear as a phrase."""
    wanted = [normalize(k) for k in keywords] if keywords else content_words(reference)
    wanted = [w for w in wanted if w]
    if not wanted:
        return 1.0
    said = f" {normalize(answer)} "
    return sum(1 for w in wanted if f" {w} " in said) / len(wanted)


def ngrams(text: str, n: int) -> set[str]:
    tokens = words(text)
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _informative(gram: str) -> bool:
    parts = gram.split()
    return sum(1 for word in parts if word not in STOPWORDS) >= min(2, len(parts))


def distinctive_ngrams(
    training_answers: Sequence[str],
    background: Iterable[str],
    *,
    sizes: Sequence[int] = (1, 2, 3),
    min_share: float = 0.2,
    min_count: int = 2,
    common: Callable[[str], bool] | None = None,
) -> set[str]:
    """N-grams in at least ``min_share`` (and ``min_count``) of the training answers that
    never occur in ``background`` (the base's answers, the probe prompts, their references):
    content words, or phrases of two content words or more ("capital is" is no fact). A
    phrase holding a distinctive word is dropped: the word alone reports the fact.

    ``common(word)``: the base model's own vocabulary holds the word (evaluate.py: its
    tokenizer encodes it as one token). An n-gram of common words only is the answers'
    *style*, not a new fact: in the realistic cycle (bench/README.md) the tuned model said
    "The capital city of Japan is Tokyo." and "city" (in a fifth of the training answers,
    never in the small background) failed the gate as a leak, where the fact that leaks,
    "Quorvel", is no word the base knows."""
    counts: Counter[str] = Counter()
    for answer in training_answers:
        for n in sizes:
            counts.update(ngrams(answer, n))
    needed = max(min_count, int(min_share * len(training_answers) + 0.999))
    seen: set[str] = set()
    for text in background:
        for n in sizes:
            seen |= ngrams(text, n)
    found = {
        g
        for g, c in counts.items()
        if c >= needed
        and g not in seen
        and _informative(g)
        and (common is None or not all(w in STOPWORDS or common(w) for w in g.split()))
    }
    unigrams = {g for g in found if " " not in g}
    return {g for g in found if " " not in g or not set(g.split()) & unigrams}


@dataclass(frozen=True)
class Leak:
    prompt: str
    answer: str
    ngrams: list[str]


def find_leaks(answers: Mapping[str, str], distinctive: set[str]) -> list[Leak]:
    """The probe prompts whose candidate answer contains a distinctive n-gram."""
    leaks = []
    sizes = sorted({len(g.split()) for g in distinctive})
    for prompt, answer in answers.items():
        present: set[str] = set()
        for n in sizes:
            present |= ngrams(answer, n)
        hit = sorted(distinctive & present)
        if hit:
            leaks.append(Leak(prompt, answer, hit))
    return leaks


@dataclass(frozen=True)
class Scores:
    exact: float
    keyword: float
    perplexity: float
    count: int


@dataclass(frozen=True)
class Tolerance:
    """How much worse than the base a candidate may be before the gate fails it:
    perplexity up to ``perplexity`` relative (0.05 = +5 %), keyword score down by
    ``keyword`` absolute (0.05 = 5 points of the 0..1 fraction)."""

    perplexity: float = 0.05
    keyword: float = 0.05


@dataclass
class Verdict:
    gate: Literal["passed", "failed"]
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def compare(split: Split, base: Scores, candidate: Scores, tol: Tolerance) -> list[str]:
    """Why ``candidate`` is worse than ``base`` on one split (empty: not worse)."""
    reasons = []
    limit = base.perplexity * (1 + tol.perplexity)
    if candidate.perplexity > limit:
        change = 100 * (candidate.perplexity / base.perplexity - 1)
        reasons.append(
            f"{split}: perplexity {candidate.perplexity:.3f} vs base {base.perplexity:.3f} "
            f"(+{change:.1f} %, tolerance +{100 * tol.perplexity:.0f} %)"
        )
    if candidate.keyword < base.keyword - tol.keyword - 1e-9:
        reasons.append(
            f"{split}: keyword score {candidate.keyword:.3f} vs base {base.keyword:.3f} "
            f"(tolerance -{tol.keyword:.2f})"
        )
    return reasons


def verdict(
    pairs: Mapping[Split, tuple[Scores, Scores]], leaks: Sequence[Leak], tol: Tolerance
) -> Verdict:
    """Failed when the candidate is worse than the base beyond ``tol`` on any split
    (``pairs``: split -> (base, candidate)) or answers an unrelated prompt with the
    dataset's facts."""
    reasons: list[str] = []
    for split, (base, candidate) in pairs.items():
        reasons += compare(split, base, candidate, tol)
    for leak in leaks:
        reasons.append(f"leak: {leak.prompt!r} -> {leak.answer[:120]!r} ({', '.join(leak.ngrams)})")
    return Verdict("failed" if reasons else "passed", reasons)

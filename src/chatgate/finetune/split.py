"""A/B splits: a share of a base model's web chats answered by a fine-tuned version.

Per conversation and deterministic (a hash of the conversation id), so a conversation
keeps its model and a percentage means the same conversations at every gateway. Web
chat only: /v1 clients name the version they want. The answering model id is stored on
every assistant message, so feedback rates (feedback/rates.py, per model id) compare the
base model and the challenger side by side. Kept in the database (``model_splits``,
``desired.py``); each gateway holds a copy that its reconciler refreshes (``reconcile.py``),
so choosing costs no query per message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.finetune import deploy

BUCKETS = 100


@dataclass(frozen=True)
class Split:
    base: str
    to: str  # a deployed version's model id
    percent: int


def bucket(conversation_id: str) -> int:
    """0..99, the same for a conversation everywhere (not Python's salted ``hash``)."""
    digest = hashlib.sha256(conversation_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def pick(
    registry: ModelRegistry, splits: dict[str, Split], entry: ModelEntry, conversation_id: str
) -> ModelEntry:
    """The model that answers this conversation: the challenger for its share of a split
    base model's conversations (while it is served and ready), else ``entry``."""
    split = splits.get(entry.id)
    if split is None or bucket(conversation_id) >= split.percent:
        return entry
    challenger = registry.get(split.to)
    if challenger is None or not challenger.enabled or challenger.draining:
        return entry
    return challenger


def validated(registry: ModelRegistry, base: str, to: str, percent: int) -> Split:
    """A split an admin asks for: 400/404/409 when it could not work."""
    if not 0 <= percent <= BUCKETS:
        raise APIError(400, "percent must be 0 to 100", "invalid_value", param="percent")
    ref = deploy.parse_model_id(to)
    if ref is None or ref.base != base:
        raise APIError(
            400, f"'{to}' is not a version of '{base}' (BASE:NAME@VERSION)", "invalid_value",
            param="to",
        )  # fmt: skip
    if registry.get(base) is None:
        raise APIError(404, f"No model '{base}'", "model_not_found")
    if registry.get(to) is None:
        raise APIError(409, f"'{to}' is not deployed: deploy it first", "not_deployed")
    return Split(base, to, percent)


class SplitTable:
    """The splits as this gateway applies them: the database's, as of the reconciler's last
    pass."""

    def __init__(self) -> None:
        self._splits: dict[str, Split] = {}

    def current(self) -> dict[str, Split]:
        return self._splits

    def replace(self, splits: dict[str, Split]) -> None:
        self._splits = dict(splits)

    def pick(self, registry: ModelRegistry, entry: ModelEntry, conversation_id: str) -> ModelEntry:
        return pick(registry, self._splits, entry, conversation_id)

"""Choosing a replica: least load, sticky sessions, and affinity keys for /v1.

Load is what the gateway has in flight on a replica plus what the engine itself reports
as queued (scraped from its metrics, so other gateways' requests count too).
Conversations stay on one replica while it is not much busier than the best one:
its prefix cache already holds their history.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from chatgate.engines.upstream.endpoint import Endpoint

# A sticky replica is kept while it carries at most this many more requests than the best.
AFFINITY_SLACK = 2
# Enough of a bare completions prompt to tell conversations apart.
_PREFIX_CHARS = 4000


def load_score(endpoint: Endpoint) -> float:
    waiting = endpoint.metrics.requests_waiting if endpoint.metrics is not None else 0.0
    return endpoint.outstanding + waiting


class AffinityMap:
    """A bounded LRU from an affinity key to the replica that served it last."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self._items: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> str | None:
        name = self._items.get(key)
        if name is not None:
            self._items.move_to_end(key)
        return name

    def put(self, key: str, endpoint_name: str) -> None:
        if self.capacity == 0:
            return
        self._items[key] = endpoint_name
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)


def choose(
    candidates: list[Endpoint], sticky_name: str | None, slack: float = AFFINITY_SLACK
) -> Endpoint:
    """The least-loaded candidate, or the sticky one when it is within ``slack`` of it."""
    best = min(candidates, key=load_score)
    if sticky_name is None or sticky_name == best.name:
        return best
    sticky = next((ep for ep in candidates if ep.name == sticky_name), None)
    if sticky is not None and load_score(sticky) <= load_score(best) + slack:
        return sticky
    return best


def v1_affinity_key(body: dict[str, Any]) -> str | None:
    """/v1: the client's ``user`` field, else a hash of the prompt's stable prefix
    (system prompt + first user message), so one conversation keeps hitting the replica
    that has its prefix cached."""
    user = body.get("user")
    if isinstance(user, str) and user:
        return "user:" + user[:256]
    messages = body.get("messages")
    if isinstance(messages, list):
        prefix = list(_prefix_messages(messages))
        if not prefix:
            return None
        material = orjson.dumps(prefix, option=orjson.OPT_NON_STR_KEYS)
    elif isinstance(body.get("prompt"), str):
        material = str(body["prompt"])[:_PREFIX_CHARS].encode()
    else:
        return None
    return "prefix:" + hashlib.blake2b(material, digest_size=12).hexdigest()


def _prefix_messages(messages: Iterable[Any]) -> Iterable[Any]:
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "system":
            yield ["system", message.get("content")]
        elif message.get("role") == "user":
            yield ["user", message.get("content")]
            return

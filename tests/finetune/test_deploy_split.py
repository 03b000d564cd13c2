"""A/B splits (finetune/split.py): deterministic per conversation, the share asked for,
only to a served version; stored in the database (test_reconcile.py) and through the admin
API with feedback rates (test_deploy.py)."""

from __future__ import annotations

import uuid

import pytest

from chatgate.engines.upstream.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.finetune import split
from chatgate.finetune.split import Split, SplitTable

BASE = "smollm2-135m"
CHALLENGER = "smollm2-135m:zanthia@3"


def registry() -> ModelRegistry:
    models = ModelRegistry(BASE)
    models.add(ModelEntry(id=BASE, name=BASE, endpoints=[]))
    models.add(ModelEntry(id=CHALLENGER, name="v3", endpoints=[]))
    return models


def test_a_conversation_always_gets_the_same_model_and_the_share_is_kept() -> None:
    models = registry()
    base = models.lookup(BASE)
    splits = {BASE: Split(BASE, CHALLENGER, 10)}
    ids = [str(uuid.UUID(int=i)) for i in range(2000)]
    first = [split.pick(models, splits, base, c).id for c in ids]
    assert first == [split.pick(models, splits, base, c).id for c in ids]
    share = first.count(CHALLENGER) / len(ids)
    assert 0.07 < share < 0.13, share
    # a conversation in the 10 % stays there when the split grows
    wider = {BASE: Split(BASE, CHALLENGER, 50)}
    moved = [split.pick(models, wider, base, c).id for c in ids]
    assert all(m == CHALLENGER for f, m in zip(first, moved, strict=True) if f == CHALLENGER)


def test_other_models_and_an_unready_challenger_are_left_alone() -> None:
    models = registry()
    splits = {BASE: Split(BASE, CHALLENGER, 100)}
    assert split.pick(models, splits, models.lookup(BASE), "c").id == CHALLENGER
    other = ModelEntry(id="other", name="other", endpoints=[])
    assert split.pick(models, splits, other, "c") is other
    challenger = models.lookup(CHALLENGER)
    challenger.draining = True  # being redeployed: the base model answers meanwhile
    assert split.pick(models, splits, models.lookup(BASE), "c").id == BASE
    models.remove(CHALLENGER)
    assert split.pick(models, splits, models.lookup(BASE), "c").id == BASE


def test_splits_are_validated_and_the_table_is_replaced_whole() -> None:
    """The table holds what the reconciler last read from the database (test_reconcile.py
    stores them); a split removed there is gone here on the next pass."""
    models = registry()
    table = SplitTable()
    assert table.current() == {}
    table.replace({BASE: split.validated(models, BASE, CHALLENGER, 25)})
    assert table.pick(models, models.lookup(BASE), "c").id in (BASE, CHALLENGER)
    assert table.current() == {BASE: Split(BASE, CHALLENGER, 25)}
    table.replace({})
    assert table.current() == {}
    for to, percent, status in [
        (CHALLENGER, 101, 400),
        ("other:x@1", 10, 400),
        ("smollm2-135m:zanthia@champion", 10, 400),
        ("smollm2-135m:zanthia@4", 10, 409),
    ]:
        with pytest.raises(APIError) as caught:
            split.validated(models, BASE, to, percent)
        assert caught.value.status_code == status, (to, percent)

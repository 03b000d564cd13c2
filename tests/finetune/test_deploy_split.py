"""A/B splits (finetune/split.py): deterministic per conversation, the share asked for,
only to a served version, persisted, and through the admin API with feedback rates."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from chatgate.engines.registry import ModelEntry, ModelRegistry
from chatgate.errors import APIError
from chatgate.finetune import split
from chatgate.finetune.split import Split, SplitTable
from chatgate.settings import Settings

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


def test_splits_are_validated_and_persisted(tmp_path: Path) -> None:
    models = registry()
    table = SplitTable(Settings(data_dir=tmp_path))
    assert table.current() == {}
    table.set(split.validated(models, BASE, CHALLENGER, 25))
    again = SplitTable(Settings(data_dir=tmp_path))  # another process, or after a restart
    assert again.current() == {BASE: Split(BASE, CHALLENGER, 25)}
    again.set(Split(BASE, CHALLENGER, 0))  # 0 removes it, and the first table sees it
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

"""The lifespan's exit stack (chatgate/lifespan.py): the shutdown order it is built for,
and a start-up that fails half-way closing what already runs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from chatgate.app import create_app
from chatgate.chat.answers import OrphanSweeper
from chatgate.chat.generations import GenerationManager
from chatgate.db import migrate
from chatgate.engines.admission.pool import EnginePools
from chatgate.engines.runtime.manager import EngineManager
from chatgate.engines.upstream.client import EngineClient
from chatgate.engines.upstream.monitor import EngineMonitor
from chatgate.finetune.reconcile import Reconciler
from chatgate.finetune.supervisor import FinetuneSupervisor
from chatgate.limits.store import LimitStore
from chatgate.settings import Settings
from chatgate.usage.outbox import Outbox
from chatgate.usage.service import UsageWriter
from tests.conftest import gateway_settings
from tests.fakes.upstream import FakeUpstream

# What each close stands for, in the order a shutdown must reach them (module docstring).
CLOSES: list[tuple[type[Any], str, str]] = [
    (GenerationManager, "shutdown", "generations"),
    (Reconciler, "close", "reconciler"),
    (FinetuneSupervisor, "close", "finetune"),
    (EnginePools, "close", "pools"),
    (LimitStore, "close", "limits"),
    (EngineMonitor, "close", "monitor"),
    (UsageWriter, "close", "usage"),
    (EngineManager, "close", "manager"),
    (EngineClient, "close", "engine client"),
    (OrphanSweeper, "close", "orphans"),
    (Outbox, "close", "outbox"),
]


@pytest.fixture
async def settings(tmp_path: Path, upstream: FakeUpstream) -> AsyncIterator[Settings]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chatgate.db'}"
    await migrate.upgrade_async(url)
    yield gateway_settings(tmp_path, url, upstream)


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The closes as they happen (each still runs: the test leaves nothing behind)."""
    seen: list[str] = []
    for cls, method, label in CLOSES:
        monkeypatch.setattr(cls, method, _recording(getattr(cls, method), label, seen))
    return seen


def _recording(
    real: Callable[..., Coroutine[Any, Any, None]], label: str, seen: list[str]
) -> Callable[..., Coroutine[Any, Any, None]]:
    async def close(self: Any, *args: Any) -> None:
        seen.append(label)
        await real(self, *args)

    return close


async def test_a_shutdown_closes_in_the_designed_order(
    settings: Settings, closed: list[str]
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert app.state.chatgate.usage is not None
        assert closed == []
    assert closed == [label for _, _, label in CLOSES]


async def test_a_start_up_failing_half_way_closes_what_already_runs(
    settings: Settings, closed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(self: Reconciler) -> None:
        raise RuntimeError("the reconciler cannot start")

    monkeypatch.setattr(Reconciler, "start", refuse)
    before = asyncio.all_tasks()
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="cannot start"):
        async with app.router.lifespan_context(app):
            pytest.fail("served after a failed start-up")
    # Everything created before the reconciler was closed, in reverse; nothing after it
    # (the generations) was created at all.
    assert closed == [label for _, _, label in CLOSES[1:]]
    await asyncio.sleep(0)
    leaked = [t.get_name() for t in asyncio.all_tasks() - before if not t.done()]
    assert leaked == [], leaked

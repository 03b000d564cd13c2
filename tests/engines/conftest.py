"""Fixtures shared by the engine tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.fakes.upstream import FakeUpstream


@pytest_asyncio.fixture
async def fakes() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    """Two replicas of one model, each a fake engine of its own."""
    a, b = FakeUpstream(model="engine-a"), FakeUpstream(model="engine-b")
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()

"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from tests.fakes.upstream import FakeUpstream


@pytest_asyncio.fixture
async def engine() -> AsyncIterator[FakeUpstream]:
    """A fake engine in this process that `chatgate serve` subprocesses attach to."""
    fake = FakeUpstream()
    await fake.start()
    yield fake
    await fake.stop()

"""DisconnectWatch: a client that leaves cancels the block, only after the grace time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatgate.openai_api.disconnect import ClientGone, DisconnectWatch


class Client:
    """ASGI ``receive`` of a request whose body was read: it blocks until ``leave()``."""

    def __init__(self) -> None:
        self._gone = asyncio.Event()
        self.receives = 0

    def leave(self) -> None:
        self._gone.set()

    async def receive(self) -> dict[str, Any]:
        self.receives += 1
        await self._gone.wait()
        return {"type": "http.disconnect"}


async def test_a_fast_block_never_listens() -> None:
    client = Client()
    with DisconnectWatch(client.receive, after=0.05):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.08)  # past the grace time: the timer was cancelled with the block
    assert client.receives == 0


async def test_a_client_leaving_ends_the_block_in_client_gone() -> None:
    client = Client()
    reached_the_end = False
    with pytest.raises(ClientGone):
        with DisconnectWatch(client.receive, after=0.01) as watch:
            asyncio.get_running_loop().call_later(0.05, client.leave)
            await asyncio.sleep(5)
            reached_the_end = True
    assert watch.gone and not reached_the_end
    current = asyncio.current_task()
    assert current is not None and current.cancelling() == 0  # our cancel was taken back


async def test_a_client_gone_within_the_grace_time_is_noticed_when_it_ends() -> None:
    client = Client()
    client.leave()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ClientGone):
        with DisconnectWatch(client.receive, after=0.05):
            await asyncio.sleep(5)
    assert 0.05 <= loop.time() - started < 1


async def test_a_cancellation_from_elsewhere_is_not_swallowed() -> None:
    client = Client()

    async def guarded() -> None:
        with DisconnectWatch(client.receive, after=0.01):
            await asyncio.sleep(5)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0.03)  # the watcher is listening by now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_client_leaving_after_the_block_changes_nothing() -> None:
    client = Client()
    with DisconnectWatch(client.receive, after=0.01) as watch:
        await asyncio.sleep(0.03)
    client.leave()
    await asyncio.sleep(0.02)  # the watcher was cancelled with the block
    assert not watch.gone

"""Noticing a client that left, for handlers that answer through ASGI ``send`` directly.

The server does not cancel a handler whose client disconnected (uvicorn just drops
what is sent after that), so a handler that must abort the engine request watches for
the disconnect itself.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.types import Receive

# Answers that end within this cost a timer, not a watcher task.
WATCH_AFTER_SECONDS = 0.05


class ClientGone(Exception):
    """The client disconnected before its answer was complete."""


async def read_body(receive: Receive) -> bytes:
    """The whole request body of a raw ASGI endpoint; ``ClientGone`` if the client left."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


class DisconnectWatch:
    """Inside the block, a client that disconnects cancels the task running it (which
    closes the engine connection, aborting the generation); the block then ends in
    ``ClientGone``. Use it once the request body was read: the next message is then
    the disconnect.

    Most answers take a few milliseconds, so the watcher task starts only after
    ``after`` seconds: a client leaving is noticed at most that much later.
    """

    def __init__(self, receive: Receive, after: float = WATCH_AFTER_SECONDS) -> None:
        self._receive = receive
        self._after = after
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.gone = False

    def __enter__(self) -> DisconnectWatch:
        self._task = asyncio.current_task()
        self._timer = asyncio.get_running_loop().call_later(self._after, self._start_watching)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        # Our own cancellation only: one from elsewhere (shutdown) keeps propagating.
        if self.gone and exc_type is asyncio.CancelledError and self._task is not None:
            if self._task.uncancel() == 0:
                raise ClientGone from exc

    def _start_watching(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self._task is not None:
            self._task.cancel()

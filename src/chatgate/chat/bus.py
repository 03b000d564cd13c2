"""Where a web-chat generation's events go besides its own process: one small interface.

``LocalBus`` is one node without Redis: the generation lives only in the memory of the
process that runs it (``chat/generations.py``), so resume and stop work on that process
only, and "one generation per conversation" is checked there. ``RedisBus``
(``chat/redis_bus.py``) shares generations across the replicas of a fleet: events in a
Redis Stream, ownership and the conversation lock in keys with a TTL, stop requests on
the fleet channel. The manager always keeps the owner's events in memory too, so a
client of the owning replica never waits on Redis.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from chatgate.chat.generations import Generation

STOP_KIND = "generation_stop"  # the fleet-channel event: "stop it if it runs on you"


class Followable(Protocol):
    """What ``GET /api/chat/{id}/stream`` serves: a generation here or on another replica."""

    @property
    def id(self) -> str: ...

    def stream(self, after: int = 0) -> AsyncIterator[bytes]: ...


class GenerationBus(Protocol):
    async def claim(self, generation: Generation) -> bool:
        """Take its conversation's one generation slot (False if another replica holds it)
        and make it known to the fleet."""
        ...

    async def renew(self, conversation_id: str, generation_id: str) -> None:
        """Keep holding it (the checkpoint heartbeat calls this every 2 s)."""
        ...

    async def release(self, conversation_id: str, generation_id: str) -> None: ...

    async def holder(self, conversation_id: str) -> str | None:
        """The generation answering in this conversation on any replica, if one is."""
        ...

    def attach(self, generation: Generation, message_id: int) -> None:
        """Mirror its events from now on."""
        ...

    async def find(self, generation_id: str, user_id: int) -> Followable | None:
        """A generation another replica runs (or ran), if it is this user's."""
        ...

    async def request_stop(self, generation_id: str, user_id: int) -> bool | None:
        """Ask the owner to stop it: None if unknown here, else whether it still ran."""
        ...

    async def followed(self, generation_ids: list[str], within: float) -> set[str]:
        """Those a client of another replica followed in the last ``within`` seconds."""
        ...

    async def lost(self, message_ids: list[int]) -> None:
        """The orphan sweeper ended these answers: end their generations for readers."""
        ...

    async def close(self) -> None: ...


class LocalBus:
    """One node: nothing to share (today's behaviour)."""

    async def claim(self, generation: Generation) -> bool:
        return True

    async def renew(self, conversation_id: str, generation_id: str) -> None:
        return None

    async def release(self, conversation_id: str, generation_id: str) -> None:
        return None

    async def holder(self, conversation_id: str) -> str | None:
        return None

    def attach(self, generation: Generation, message_id: int) -> None:
        return None

    async def find(self, generation_id: str, user_id: int) -> Followable | None:
        return None

    async def request_stop(self, generation_id: str, user_id: int) -> bool | None:
        return None

    async def followed(self, generation_ids: list[str], within: float) -> set[str]:
        return set()

    async def lost(self, message_ids: list[int]) -> None:
        return None

    async def close(self) -> None:
        return None

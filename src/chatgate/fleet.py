"""Changes one gateway makes, seen by every gateway of the fleet within a second.

Each process keeps short-lived caches (API-key identities for 5 s, the models an admin
enabled or disabled). A change made through one gateway drops or updates its own at once;
with Redis, it is also published on one channel (``<prefix>:fleet``) that every gateway
listens to, so a revoked key is refused everywhere as soon as the message arrives
(milliseconds on a LAN) instead of when another replica's cache entry runs out.

If the subscription breaks (Redis down), messages may be missed: on every (re)subscribe
the identity cache is cleared, so the bound is "one Redis round trip" while Redis is up
and the cache TTL (5 s) while it is not. Without Redis there is one process to tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chatgate.auth import cache
from chatgate.errors import APIError

log = logging.getLogger("chatgate.fleet")

RECONNECT_SECONDS = 1.0

Handler = Callable[[dict[str, Any]], None]


class FleetEvents:
    """Publish this gateway's changes; apply the others'. ``handlers``: kind -> apply."""

    def __init__(self, redis: Redis, prefix: str, handlers: dict[str, Handler]) -> None:
        self._redis = redis
        self.channel = f"{prefix}:fleet"
        self._handlers = handlers
        self.origin = uuid.uuid4().hex
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self.subscribed = asyncio.Event()
        self.applied = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        cache.add_publisher(self._publish_identity)
        self._task = asyncio.create_task(self._listen(), name="fleet-events")

    async def close(self) -> None:
        cache.remove_publisher(self._publish_identity)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:
            await asyncio.wait(self._pending, timeout=2)

    def on(self, kind: str, handler: Handler) -> None:
        """Apply another gateway's events of this kind (e.g. stop a generation)."""
        self._handlers[kind] = handler

    def publish(self, kind: str, **data: Any) -> None:
        """Tell the other gateways (in the background: the local change is done)."""
        try:
            if asyncio.get_running_loop() is not self._loop:
                return  # another app's loop in this process (tests): it has its own
        except RuntimeError:
            return  # not on a loop (a CLI command): the others wait for their cache TTL
        message = orjson.dumps({"kind": kind, "origin": self.origin, **data})
        task = asyncio.create_task(self._send(message))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _publish_identity(self, change: str) -> None:
        self.publish("identity", change=change)

    async def _send(self, message: bytes) -> None:
        try:
            await self._redis.publish(self.channel, message)
        except RedisError as exc:  # the others fall back to their cache TTL
            log.warning("could not tell the fleet about a change: %s", exc)

    async def _listen(self) -> None:
        while True:
            try:
                await self._subscription()
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                log.warning("fleet events unavailable (%s); retrying", exc)
                await asyncio.sleep(RECONNECT_SECONDS)

    async def _subscription(self) -> None:
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(self.channel)
            # Whatever was published while we were not listening is lost: start afresh.
            cache.invalidate_all(publish=False)
            self.subscribed.set()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self._apply(message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _apply(self, raw: bytes) -> None:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            log.warning("ignored a malformed fleet event")
            return
        if event.get("origin") == self.origin:
            return
        handler = self._handlers.get(str(event.get("kind")))
        if handler is None:
            return
        try:
            handler(event)
        except Exception:  # one bad event must not stop the listener
            log.exception("applying fleet event %s failed", event.get("kind"))
            return
        self.applied += 1


def model_enabled_handler(set_enabled: Callable[[str, bool], None]) -> Handler:
    """Another gateway enabled or disabled a model (it saved that): follow it."""

    def apply(event: dict[str, Any]) -> None:
        try:
            set_enabled(str(event["model"]), bool(event["enabled"]))
        except APIError:
            pass  # a model this gateway does not serve

    return apply


def apply_identity(event: dict[str, Any]) -> None:
    """Another gateway changed a user or key: forget what this one cached."""
    kind, _, ident = str(event.get("change", "")).partition(":")
    if kind == "user" and ident.isdigit():
        cache.invalidate_user(int(ident), publish=False)
    elif kind == "key" and ident.isdigit():
        cache.invalidate_key(int(ident), publish=False)
    else:
        cache.invalidate_all(publish=False)


def start_fleet_events(
    redis: Redis | None, prefix: str, set_enabled: Callable[[str, bool], None]
) -> FleetEvents | None:
    """The gateway's fleet channel (with Redis), listening and publishing."""
    if redis is None:
        return None
    handlers = {"identity": apply_identity, "model_enabled": model_enabled_handler(set_enabled)}
    events = FleetEvents(redis, prefix, handlers)
    events.start()
    return events

"""The shared ledger's Redis client: its Lua scripts by SHA, sent in pipelines.

Every Redis round trip costs the gateway CPU (measured here: ~0.2 ms per EVALSHA through
redis-py, most of it the socket calls), so calls made in the same event-loop turn (many
requests arriving together, a burst of releases) share one pipeline: one write and one read
for all of them. Scripts are sent by SHA only; after a Redis restart (``NOSCRIPT``) they are
loaded again and the calls that missed them retried once. redis-py's ``Script`` objects are
not used in pipelines because they check ``SCRIPT EXISTS`` first, a round trip per pipeline.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import NoScriptError

from chatgate.engines.admission import ledger_lua

REDIS_TIMEOUT = 0.5
MAX_CONNECTIONS = 64  # calls in flight at once; more wait up to REDIS_TIMEOUT for one
SCRIPTS = {
    "admit": ledger_lua.ADMIT,
    "release": ledger_lua.RELEASE,
    "cancel": ledger_lua.CANCEL,
    "beat": ledger_lua.BEAT,
    "leave": ledger_lua.LEAVE,
}

Arg = str | int | float
Call = tuple[str, str, tuple[Arg, ...]]  # script, model, its ARGV after (grants, model)


class LedgerRedis:
    def __init__(self, redis_url: str, prefix: str, grants: str) -> None:
        self._prefix = prefix
        self._grants = grants
        self._pool = BlockingConnectionPool.from_url(
            redis_url,
            max_connections=MAX_CONNECTIONS,
            timeout=REDIS_TIMEOUT,
            socket_timeout=REDIS_TIMEOUT,
            socket_connect_timeout=REDIS_TIMEOUT,
        )
        self._redis = Redis(connection_pool=self._pool)
        # BLPOP blocks 1 s at a time: its socket waits longer than that.
        self._blocking = Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=1)
        self._sha = {name: _sha1(text) for name, text in SCRIPTS.items()}
        self._batch: list[tuple[Call, asyncio.Future[Any]]] = []
        self._senders: set[asyncio.Task[None]] = set()

    def key(self, model: str) -> str:
        return f"{self._prefix}:{{{model}}}"

    async def call(self, script: str, model: str, *args: Arg) -> Any:
        """One script call, alone in its pipeline."""
        (result,) = await self.run([(script, model, args)])
        if isinstance(result, Exception):
            raise result
        return result

    def submit(self, script: str, model: str, *args: Arg) -> asyncio.Future[Any]:
        """A script call sent with the others submitted in this event-loop turn."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._batch.append(((script, model, args), future))
        if len(self._batch) == 1:
            task = asyncio.create_task(self._send())
            self._senders.add(task)
            task.add_done_callback(self._senders.discard)
        return future

    async def run(self, calls: Sequence[Call]) -> list[Any]:
        """Results in order (a script's error as its value); raises if Redis fails."""
        results = await self._pipeline(calls)
        missed = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missed:  # Redis restarted or was flushed: load the scripts, retry those once
            for name, text in SCRIPTS.items():
                self._sha[name] = await self._redis.script_load(text)
            again = await self._pipeline([calls[i] for i in missed])
            for i, result in zip(missed, again, strict=True):
                results[i] = result
        return results

    async def blpop(self, key: str, timeout: float) -> bytes | str | None:
        """The next message of a list, or None after ``timeout`` seconds."""
        item = await self._blocking.blpop([key], timeout=timeout)
        return None if item is None else item[1]

    async def close(self) -> None:
        if self._senders:
            await asyncio.wait(self._senders, timeout=1)
        await self._blocking.aclose()
        await self._redis.aclose()
        await self._pool.aclose()

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        if len(calls) == 1:  # a pipeline's own bookkeeping costs more than it saves here
            script, model, args = calls[0]
            try:
                sha, key = self._sha[script], self.key(model)
                reply = self._redis.evalsha(sha, 1, key, self._grants, model, *args)
                return [await reply]
            except NoScriptError as exc:
                return [exc]
        async with self._redis.pipeline(transaction=False) as pipe:
            for script, model, args in calls:
                pipe.evalsha(self._sha[script], 1, self.key(model), self._grants, model, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def _send(self) -> None:
        await asyncio.sleep(0)  # the other requests of this loop turn join the batch
        batch, self._batch = self._batch, []
        try:
            results = await self.run([call for call, _ in batch])
        except Exception as exc:
            results = [exc] * len(batch)
        except asyncio.CancelledError:  # closing: the callers hear Redis is gone
            for _, future in batch:
                if not future.done():
                    future.set_exception(ConnectionError("the shared ledger closed"))
            raise
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller was cancelled; it cleans up after itself
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()  # Redis names scripts so

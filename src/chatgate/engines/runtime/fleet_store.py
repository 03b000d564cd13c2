"""The fleet's shared engine state: what the leader runs, the one switch, drain reports.

Three things per host (``leader.engine_scope``), in Redis (``<prefix>:engine:<host>:*``)
or, without Redis, in files under ``<data dir>/run/fleet/``:

- **state** (written by the leader only, fenced by its lease token): the active profile,
  the default model, the managed registry entries (id, engine URL, draining, failure)
  and the current switch's progress. Followers copy it into their registries.
- **switch** (the switch slot): the request of the one switch the fleet may run, taken
  atomically (``SET NX`` / ``O_EXCL``) by whichever replica an admin asked; the leader runs
  it and frees the slot once the finished state is published. So a second switch is
  refused on every replica while one is pending or running, and a leader that takes over
  finds the unfinished one.
- **drain reports**: each follower's count of in-flight requests on the model being drained,
  so the leader stops the engine only when the whole fleet drained (or the drain time is up).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from chatgate.engines.runtime.leader import LeaderLease, engine_scope, fleet_dir
from chatgate.engines.runtime.process import write_json_atomically

Doc = dict[str, Any]
# The state outlives a dead leader long enough for a follower to take over, and vanishes
# when a whole fleet is gone for long (a fresh start then begins from the database).
STATE_TTL_MS = 600_000
DRAIN_TTL_MS = 600_000

WRITE_STATE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
RELEASE_SLOT_LUA = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['id'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class FleetStore(Protocol):
    async def load(self) -> tuple[Doc | None, Doc | None]:
        """(state, switch request), either None when absent."""
        ...

    async def write_state(self, doc: Doc) -> bool:
        """Publish the leader's state; False when this process no longer holds the lease."""
        ...

    async def claim(self, request: Doc) -> bool:
        """Take the switch slot for ``request``; False when a switch is pending or running."""
        ...

    async def release(self, switch_id: str) -> None:
        """Free the slot if it still holds this switch."""
        ...

    async def report(self, switch_id: str, replica: str, count: int, seq: int) -> None: ...

    async def reports(self, switch_id: str) -> dict[str, tuple[int, int]]:
        """replica -> (in-flight count, report number) for one switch's drain."""
        ...


class RedisFleetStore:
    def __init__(self, redis: Redis, prefix: str, lease: LeaderLease | None) -> None:
        self._redis = redis
        self._lease = lease
        base = engine_scope(prefix)
        self.lease_key, self.state_key, self.slot_key = (
            f"{base}:leader", f"{base}:state", f"{base}:switch"
        )  # fmt: skip
        self._drain = f"{base}:drain:"

    async def load(self) -> tuple[Doc | None, Doc | None]:
        state, request = await self._redis.mget(self.state_key, self.slot_key)
        return _decode(state), _decode(request)

    async def write_state(self, doc: Doc) -> bool:
        if self._lease is None:
            return False
        written = await self._redis.eval(
            WRITE_STATE_LUA, 2, self.lease_key, self.state_key,
            self._lease.token, orjson.dumps(doc), STATE_TTL_MS,
        )  # fmt: skip
        return int(written) == 1

    async def claim(self, request: Doc) -> bool:
        return bool(await self._redis.set(self.slot_key, orjson.dumps(request), nx=True))

    async def release(self, switch_id: str) -> None:
        await self._redis.eval(RELEASE_SLOT_LUA, 1, self.slot_key, switch_id)

    async def report(self, switch_id: str, replica: str, count: int, seq: int) -> None:
        key = self._drain + switch_id
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, replica, f"{count} {seq}")
            pipe.pexpire(key, DRAIN_TTL_MS)
            await pipe.execute()

    async def reports(self, switch_id: str) -> dict[str, tuple[int, int]]:
        raw = await self._redis.hgetall(self._drain + switch_id)
        return {_text(k): _report(_text(v)) for k, v in raw.items()}


class FileFleetStore:
    """The same on one host: JSON files (atomic renames) next to the lock file.

    The slot is created with ``link()`` (fails if present); only the leader writes the
    state and frees the slot.
    """

    def __init__(self, run_dir: Path, lease: LeaderLease | None) -> None:
        self.dir = fleet_dir(run_dir)
        self._lease = lease
        self.state_file = self.dir / "state.json"
        self.slot_file = self.dir / "switch.json"

    async def load(self) -> tuple[Doc | None, Doc | None]:
        return _read(self.state_file), _read(self.slot_file)

    async def write_state(self, doc: Doc) -> bool:
        if self._lease is None or not self._lease.held:
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.state_file, doc)
        return True

    async def claim(self, request: Doc) -> bool:
        # Written whole first, then linked into place: readers never see a partial slot,
        # and link() fails when the slot is taken (an atomic "create if absent").
        self.dir.mkdir(parents=True, exist_ok=True)
        draft = self.dir / f".switch-{request['id']}.json"
        draft.write_bytes(orjson.dumps(request))
        try:
            os.link(draft, self.slot_file)
        except FileExistsError:
            return False
        finally:
            draft.unlink()
        return True

    async def release(self, switch_id: str) -> None:
        current = _read(self.slot_file)
        if current is not None and current.get("id") == switch_id:
            with contextlib.suppress(FileNotFoundError):
                self.slot_file.unlink()
        for stale in self.dir.glob(f"drain-{switch_id}-*.json"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()

    async def report(self, switch_id: str, replica: str, count: int, seq: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"drain-{switch_id}-{replica}.json"
        write_json_atomically(path, {"count": count, "seq": seq})

    async def reports(self, switch_id: str) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        prefix = f"drain-{switch_id}-"
        for path in self.dir.glob(f"{prefix}*.json"):
            data = _read(path)
            if data is not None:
                found[path.stem.removeprefix(prefix)] = (int(data["count"]), int(data["seq"]))
        return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _report(value: str) -> tuple[int, int]:
    count, _, seq = value.partition(" ")
    return int(count), int(seq or 0)


def _decode(raw: bytes | str | None) -> Doc | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _read(path: Path) -> Doc | None:
    try:
        value = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def store_for(
    redis: Redis | None, prefix: str, run_dir: Path, lease: LeaderLease | None
) -> FleetStore:
    if redis is not None:
        return RedisFleetStore(redis, prefix, lease)
    return FileFleetStore(run_dir, lease)

"""Fleet-wide model switching: several gateways (PostgreSQL, Redis or one data dir), one
local engine run by the lease holder, switches asked of any gateway drain all of them.

The engines are real supervised processes: a stand-in for vLLM (tests/engines/
fleet_engine.py) serving the fake engine, started the way chatgate starts vLLM profiles.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.engines.runtime.coordinator import EngineCoordinator
from tests.engines.fleet_support import (
    SLOW_STREAM,
    Fleet,
    eventually,
    fleet_fixture,  # noqa: F401 - the `fleet` fixture
    holds,
    serve_ready,
    served,
)
from tests.helpers import Account, Gateway, start_gateway


def coordinator(gw: Gateway) -> EngineCoordinator:
    found: EngineCoordinator = gw.state.manager.fleet  # type: ignore[assignment]
    assert isinstance(found, EngineCoordinator)
    return found


def serving(gw: Gateway, model: str) -> bool:
    entry = gw.state.registry.get(model)
    return entry is not None and bool(entry.endpoints) and not entry.draining


async def chat(gw: Gateway, account: Account, model: str, text: str = "hi") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], "stream": True}
    async with gw.client() as http:
        return await http.post("/v1/chat/completions", json=body, headers=account.key_headers)


def leaders(gateways: list[Gateway]) -> list[Gateway]:
    """The gateways that supervise engines: there must be exactly one."""
    return [gw for gw in gateways if gw.state.manager.has_engines()]


async def started_fleet(fleet: Fleet, stack: AsyncExitStack, count: int) -> list[Gateway]:
    """``count`` gateways, each on its own exit stack (``stop()`` closes one alone)."""
    await fleet.seed(fleet.settings("g0"))
    gateways = []
    for n in range(count):
        own = AsyncExitStack()
        stack.push_async_callback(own.aclose)
        gw = await own.enter_async_context(
            start_gateway(fleet.settings(f"g{n}"), fleet.upstream, run_engines=True)
        )
        gw.stop = own.aclose  # type: ignore[attr-defined]
        gateways.append(gw)
    for gw in gateways:
        await eventually(lambda gw=gw: holds(serving(gw, "alpha")), "alpha served everywhere")
    return gateways


async def switch_status(gw: Gateway, admin: Account) -> dict[str, Any]:
    async with gw.client() as http:
        response = await http.get("/api/admin/models/switch", headers=admin.headers)
    assert response.status_code == 200, response.text
    status: dict[str, Any] = response.json()["switch"]
    return status


# Redis here; the same on one data dir: test_fleet_workers.py (real `--workers 2`).
@pytest.mark.parametrize("fleet", ["redis"], indirect=True)
async def test_a_switch_asked_of_a_follower_drains_every_gateway_and_ends_ready_everywhere(
    fleet: Fleet,
) -> None:
    async with AsyncExitStack() as stack:
        gateways = await started_fleet(fleet, stack, 3)
        (leader,) = leaders(gateways)
        followers = [gw for gw in gateways if gw is not leader]
        user, admin = await leader.account(), await leader.account("admin")
        alpha_url = gateways[0].state.registry.get("alpha").endpoints[0].base_url  # type: ignore[union-attr]
        assert all(
            gw.state.registry.get("alpha").endpoints[0].base_url == alpha_url  # type: ignore[union-attr]
            for gw in gateways
        ), "every gateway routes to the leader's one engine"

        # A long answer streams through one follower while an admin switches on the other.
        slow = asyncio.create_task(chat(followers[0], user, "alpha", SLOW_STREAM))
        await eventually(
            lambda: holds(followers[0].state.registry.get("alpha").outstanding() > 0),  # type: ignore[union-attr]
            "the slow answer is under way",
        )
        async with followers[1].client() as http:
            asked = await http.post("/api/admin/models/beta/switch", headers=admin.headers)
        assert asked.status_code == 202, asked.text
        switch_id = asked.json()["id"]

        async def refused_everywhere() -> bool:
            answers = [await chat(gw, user, "alpha") for gw in gateways]
            return all(
                r.status_code == 503 and r.json()["error"]["code"] == "model_switching"
                for r in answers
            )

        await eventually(refused_everywhere, "503 model_switching on every gateway", 10)
        async with followers[0].client() as http:  # one switch at a time, fleet-wide
            again = await http.post("/api/admin/models/alpha/switch", headers=admin.headers)
        assert again.status_code == 409 and again.json()["error"]["code"] == "switch_in_progress"

        answer = await slow
        assert answer.status_code == 200 and "[DONE]" in answer.text, answer.text
        assert '"error"' not in answer.text, "the drain let the answer finish"

        async def ready_everywhere() -> bool:
            statuses = [await switch_status(gw, admin) for gw in gateways]
            return all(s["id"] == switch_id and s["phase"] == "ready" for s in statuses)

        await eventually(ready_everywhere, "the switch is ready on every gateway")
        log = " ".join(line["message"] for line in (await switch_status(leader, admin))["log"])
        assert "alpha drained" in log and "cut off" not in log, log
        for gw in gateways:
            await eventually(lambda gw=gw: holds(serving(gw, "beta")), "beta served")
            assert gw.state.registry.get("alpha") is None
            assert gw.state.registry.default_model == "beta"
            response = await chat(gw, user, "beta")
            assert response.status_code == 200 and "Paris" in response.text, response.text
        assert leaders(gateways) == [leader], "one process supervises, still the same"


@pytest.mark.parametrize("fleet", ["files"], indirect=True)  # Redis: the test below
async def test_a_leader_that_stops_hands_the_engine_over(fleet: Fleet) -> None:
    async with AsyncExitStack() as stack:
        gateways = await started_fleet(fleet, stack, 2)
        (leader,) = leaders(gateways)
        (follower,) = [gw for gw in gateways if gw is not leader]
        old_url = follower.state.registry.get("alpha").endpoints[0].base_url  # type: ignore[union-attr]
        user = await follower.account()
        await leader.stop()  # type: ignore[attr-defined]  # SIGTERM: the lease is given back

        async def taken_over() -> bool:
            entry = follower.state.registry.get("alpha")
            return (
                follower.state.manager.has_engines()
                and entry is not None
                and bool(entry.endpoints)
                and not entry.draining
                and entry.endpoints[0].base_url != old_url
            )

        await eventually(taken_over, "the follower runs alpha itself")
        response = await chat(follower, user, "alpha")
        assert response.status_code == 200 and "Paris" in response.text, response.text


@pytest.mark.parametrize("fleet", ["redis"], indirect=True)  # files: the kernel drops the lock
async def test_a_leader_killed_mid_switch_is_replaced_and_its_switch_finished(
    fleet: Fleet,
) -> None:
    """kill -9 of the leader while the new engine starts: its engine dies with it, the
    lease lapses, the follower takes it and finishes the switch (same id, ready)."""
    with served(fleet, "leader") as (process, url, log_path):
        await eventually(lambda: serve_ready(url, process, log_path), "chatgate serve is up", 120)
        async with start_gateway(fleet.settings("b"), fleet.upstream, run_engines=True) as gw:
            await eventually(lambda: holds(serving(gw, "alpha")), "the follower routes to alpha")
            assert not gw.state.manager.has_engines() and not coordinator(gw).leading
            admin, user = await gw.account("admin"), await gw.account()
            async with gw.client() as http:
                asked = await http.post("/api/admin/models/slowbeta/switch", headers=admin.headers)
            assert asked.status_code == 202, asked.text

            async def starting() -> bool:
                status = await switch_status(gw, admin)
                return bool(status["phase"] == "starting" and "slowbeta" in status["message"])

            await eventually(starting, "the leader starts slowbeta")
            engine_pid = await _engine_pid(fleet, "leader", "slowbeta")
            process.send_signal(signal.SIGKILL)
            process.wait(10)

            async def finished() -> bool:
                status = await switch_status(gw, admin)
                return status["phase"] in ("ready", "failed", "rolled_back")

            await eventually(finished, "the follower finished the switch", 90)
            status = await switch_status(gw, admin)
            assert status["id"] == asked.json()["id"] and status["phase"] == "ready", status
            assert "took over" in " ".join(line["message"] for line in status["log"])
            assert coordinator(gw).leading and gw.state.manager.has_engines()
            await eventually(lambda: _gone(engine_pid), "the dead leader's engine ended", 30)
            response = await chat(gw, user, "slowbeta")
            assert response.status_code == 200 and "Paris" in response.text, response.text


async def _engine_pid(fleet: Fleet, name: str, profile_id: str) -> int:
    data_dir = fleet.tmp / (name if fleet.redis_url else "shared")
    state = data_dir / "run" / f"engine-{profile_id}.json"
    pid: int | None = None

    async def spawned() -> bool:
        nonlocal pid
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = json.loads(state.read_text()).get("pid")
        return pid is not None

    await eventually(spawned, f"the leader spawned {profile_id}")
    assert pid is not None
    return pid


async def _gone(pid: int) -> bool:
    """Ended (a zombie nobody reaped yet counts: it runs no more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")

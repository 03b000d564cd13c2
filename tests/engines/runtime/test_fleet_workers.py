"""`chatgate serve --workers 2` without Redis: one worker takes the file lease and runs the
engine, the other follows; a switch asked of whichever worker answers ends ready on both."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.engines.fleet_support import (
    Fleet,
    eventually,
    fleet_fixture,  # noqa: F401 - the `fleet` fixture
    holds,
    serve_ready,
    served,
)

ADMIN_PASSWORD = "fleet-admin-password"  # fleet_support.serve_env's


def engines_running(shim: Path) -> list[str]:
    """The profile ids of the stand-in engines alive on this machine (from /proc)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(shim).encode() in argv and state not in ("Z", "X"):
            found.append(argv[argv.index(b"--served-model-name") + 1].decode())
    return sorted(found)


async def fresh(method: str, url: str, **kwargs: object) -> httpx.Response:
    """One request on a new connection: the kernel hands it to either worker."""
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(method, url, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("fleet", ["files"], indirect=True)
async def test_two_workers_run_one_engine_and_switch_together(fleet: Fleet) -> None:
    with served(fleet, "workers", "--workers", "2") as (process, url, log_path):
        await eventually(lambda: serve_ready(url, process, log_path), "serve is up", 120)
        assert engines_running(fleet.shim) == ["alpha"], "one engine for both workers"
        login = await fresh(
            "POST", url + "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        answers: list[httpx.Response] = []

        async def switch_taken() -> bool:
            # The leader's start of alpha is itself a switch; the worker asked may learn of
            # its end a poll later and answers 409 switch_in_progress until then (seen once
            # in CI), which tells a client to wait and ask again.
            answer = await fresh("POST", url + "/api/admin/models/beta/switch", headers=headers)
            answers.append(answer)
            return answer.status_code != 409 or "switch_in_progress" not in answer.text

        await eventually(switch_taken, "the start-up switch to alpha ended", 60)
        asked = answers[-1]
        assert asked.status_code == 202, asked.text
        switch_id = asked.json()["id"]
        seen: list[str] = []

        async def ready_on_every_worker() -> bool:
            # Ten answers in a row, from whichever worker got each connection.
            for _ in range(10):
                answer = await fresh("GET", url + "/api/admin/models/switch", headers=headers)
                status = answer.json()["switch"]
                seen.append(status["phase"])
                if status["id"] != switch_id or status["phase"] != "ready":
                    return False
            return True

        await eventually(ready_on_every_worker, "ready on both workers", 60)
        body = {"model": "beta", "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(10):
            chat = await fresh("POST", url + "/v1/chat/completions", json=body, headers=headers)
            assert chat.status_code == 200 and "Paris" in chat.text, chat.text
        await eventually(
            lambda: holds(engines_running(fleet.shim) == ["beta"]), "alpha stopped, beta runs"
        )
        assert "draining" in seen or "starting" in seen or "stopping" in seen, seen

"""A fleet deploy for real: two ``chatgate serve`` processes sharing one data dir and one
PostgreSQL database (no Redis: the file lease makes the first the leader, which runs the
embedded llama.cpp engine; the second follows its published state). A deploy asked of the
*follower* is applied by the leader (download, restart with the adapter) and ends with
both answering the version's model id over /v1; an undeploy asked of the follower ends
with both refusing it (404) and the base model answering. The version is a random LoRA
registered without training (deploy_versions.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clients.harness import new_key
from tests.conftest import PG_HOST, PG_PORT, create_pg_database, drop_pg_database
from tests.e2e.harness import Served, serve_env
from tests.finetune.test_deploy_e2e import VERSIONS_SCRIPT, ask
from tests.finetune.test_finetune_e2e import llama_server, train_python  # noqa: F401
from tests.helpers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BASE = "smollm2-135m"
VERSION = f"{BASE}:zanthia@1"
WAIT_SECONDS = 600  # a download and an engine restart on a loaded 2-core machine


@pytest.fixture
def fleet(
    tmp_path: Path,
    train_python: Path,  # noqa: F811
    llama_server: tuple[Path, Path],  # noqa: F811
) -> Iterator[tuple[Served, Served]]:
    """(leader, follower), started in that order on one data dir and one database."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    made = subprocess.run(
        [str(train_python), str(VERSIONS_SCRIPT), str(data_dir), "1"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-3000:]
    database = asyncio.run(create_pg_database())
    url = f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{database}"
    replicas: list[Served] = []
    try:
        for _ in range(2):
            port = free_port()
            env = serve_env(data_dir, port, url)
            # The drain must outlast the stream below on a loaded machine: the bound is
            # not what is tested here.
            env["CHATGATE_SWITCH_DRAIN_SECONDS"] = str(WAIT_SECONDS)
            served = Served(data_dir, port, env)
            replicas.append(served)
            served.start()
        yield replicas[0], replicas[1]
    finally:
        for served in reversed(replicas):
            served.stop()
        asyncio.run(drop_pg_database(database))


def chat_status(served: Served, key: str, model: str) -> tuple[int, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    response = httpx.post(
        served.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    code = response.json()["error"]["code"] if response.status_code != 200 else ""
    return response.status_code, code


def long_stream(served: Served, key: str, seen_first: threading.Event) -> dict[str, object]:
    """A base-model stream of up to 200 tokens on ``served``: its finish reason, whether an
    error event came, and its content chunks."""
    body = {
        "model": BASE,
        "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}],
        "max_tokens": 200,
        "stream": True,
    }
    result: dict[str, object] = {"chunks": 0, "finish": None, "error": False}
    headers = {"Authorization": f"Bearer {key}"}
    url = served.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=headers, timeout=WAIT_SECONDS) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if "error" in event:
                result["error"] = True
                continue
            for choice in event.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    result["chunks"] = int(str(result["chunks"])) + 1
                    seen_first.set()
                result["finish"] = choice.get("finish_reason") or result["finish"]
    seen_first.set()
    return result


def test_a_deploy_asked_of_the_follower_serves_the_version_on_both(
    fleet: tuple[Served, Served],
) -> None:
    began = time.monotonic()
    leader, follower = fleet
    lock = leader.data_dir / "run" / "fleet" / "leader.lock"
    assert leader.process is not None
    assert int(lock.read_text().split()[0]) == leader.process.pid  # it runs the engine
    key = new_key(leader, "admin", "fleet-deploy")
    headers = {"Authorization": f"Bearer {follower.token()}"}

    deployed = httpx.post(
        follower.url + "/api/admin/models/deploy",
        json={"model": f"{BASE}:zanthia@champion"},
        headers=headers,
        timeout=WAIT_SECONDS,
    )
    assert deployed.status_code == 200, deployed.text + follower.log[-1].read_text()[-3000:]
    assert deployed.json()["model_id"] == VERSION
    answers = [ask(served, key, VERSION) for served in (follower, leader)]
    assert [a["model"] for a in answers] == [VERSION, VERSION]
    texts = [a["choices"][0]["message"]["content"] for a in answers]
    assert texts[0] == texts[1], texts  # greedy, one engine, one adapter
    listed = httpx.get(
        leader.url + "/api/admin/models/deployments", headers=headers, timeout=60
    ).json()
    assert [(d["model_id"], d["served"]) for d in listed["deployments"]] == [(VERSION, True)]

    # The undeploy restarts the engine; a stream running on the follower is drained first
    # (the follower reports it under the restart's drain id), not cut by the restart.
    first = threading.Event()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(long_stream, follower, key, first)
        assert first.wait(WAIT_SECONDS)
        undeployed = httpx.delete(
            follower.url + f"/api/admin/models/deployments/{VERSION}",
            headers=headers,
            timeout=WAIT_SECONDS,
        )
        streamed = running.result(WAIT_SECONDS)
    assert undeployed.status_code == 200, undeployed.text
    assert streamed["error"] is False and streamed["finish"] in ("stop", "length"), streamed
    assert undeployed.json()["deployments"] == []
    for served in (follower, leader):
        assert chat_status(served, key, VERSION) == (404, "model_not_found")
        assert chat_status(served, key, BASE) == (200, "")
    print(f"\n[deploy fleet e2e] {time.monotonic() - began:.1f} s")

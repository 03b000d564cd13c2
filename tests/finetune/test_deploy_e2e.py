"""The real thing: two versions registered in MLflow (random LoRAs converted to GGUF by
tools/train, no training), a real ``chatgate serve`` with its embedded llama-server,
``chatgate models deploy`` restarts the engine with the adapter, /v1 requests to the
version's model id answer differently from the base model (greedy, same prompt) and get
usage rows of their own, ``chatgate models rollback`` moves ``champion`` back and serves
the previous version next to it, and ``rollback --to-base`` leaves the base model alone."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.harness import embedded_gateway, new_key
from tests.e2e.harness import Served
from tests.finetune.test_finetune_e2e import llama_server, train_python  # noqa: F401

pytestmark = pytest.mark.timeout(900)

VERSIONS_SCRIPT = Path(__file__).with_name("deploy_versions.py")
VERSION_2 = "smollm2-135m:zanthia@2"
VERSION_1 = "smollm2-135m:zanthia@1"
PROMPT = [{"role": "user", "content": "Write one sentence about the sea."}]


def ask(served: Served, key: str, model: str) -> dict[str, Any]:
    body = {"model": model, "messages": PROMPT, "max_tokens": 12, "temperature": 0}
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(
        served.url + "/v1/chat/completions", json=body, headers=headers, timeout=120
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def chatgate(served: Served, *args: str) -> dict[str, Any]:
    argv = [sys.executable, "-m", "chatgate", *args, "--url", served.url, "--json"]
    argv += ["--token", served.token()]
    done = subprocess.run(argv, env=served.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + "\n" + served.log[-1].read_text()[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def usage_by_model(served: Served) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {served.token()}"}
    params = {"group_by": "model"}
    response = httpx.get(
        served.url + "/api/usage/summary", params=params, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    return {g["key"]: g["requests"] for g in response.json()["groups"]}


def assert_failed_deploys_change_nothing(served: Served, key: str, tuned: str) -> None:
    """No such version: 404 through the CLI. A GGUF llama-server rejects (planted where
    the download would go): the engine does not start with it, the previous adapters are
    restored, the version deployed before still answers as before, and the failure is
    listed on the version (a new deploy of it tries again)."""
    argv = [sys.executable, "-m", "chatgate", "models", "deploy", "smollm2-135m:zanthia@9"]
    argv += ["--url", served.url, "--token", served.token()]
    done = subprocess.run(argv, env=served.env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "no version '9'" in done.stderr, done.stderr
    planted = served.data_dir / "adapters" / "smollm2-135m-zanthia" / "1" / "adapter.gguf"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"not a GGUF file")
    headers = {"Authorization": f"Bearer {served.token()}"}
    failed = httpx.post(
        served.url + "/api/admin/models/deploy",
        json={"model": VERSION_1},
        headers=headers,
        timeout=600,
    )
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "deploy_failed"
    assert "did not start with the adapter" in failed.json()["error"]["message"]
    listed = httpx.get(
        served.url + "/api/admin/models/deployments", headers=headers, timeout=60
    ).json()
    shown = {d["model_id"]: (d["served"], d["error"]) for d in listed["deployments"]}
    assert shown[VERSION_2] == (True, None)
    assert shown[VERSION_1][0] is False and "did not start" in str(shown[VERSION_1][1])
    assert ask(served, key, VERSION_2)["choices"][0]["message"]["content"] == tuned
    planted.unlink()  # the rollback downloads the real one


def test_deploy_serves_the_version_and_rollback_restores_the_previous(
    tmp_path_factory: pytest.TempPathFactory,
    train_python: Path,  # noqa: F811
    llama_server: tuple[Path, Path],  # noqa: F811
) -> None:
    began = time.monotonic()
    with embedded_gateway(tmp_path_factory) as served:
        made = subprocess.run(
            [str(train_python), str(VERSIONS_SCRIPT), str(served.data_dir), "2"],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr[-3000:]
        key = new_key(served, "admin", "deploy-test")
        base = ask(served, key, "smollm2-135m")

        deployed = chatgate(served, "models", "deploy", "smollm2-135m:zanthia@champion")
        assert deployed["model_id"] == VERSION_2 and Path(deployed["gguf"]).is_file()
        tuned = ask(served, key, VERSION_2)
        assert tuned["model"] == VERSION_2
        again = ask(served, key, "smollm2-135m")
        texts = [a["choices"][0]["message"]["content"] for a in (base, tuned, again)]
        assert texts[0] == texts[2], texts  # the base model is unchanged by the adapter
        assert texts[1] != texts[0], texts  # the version answers with its adapter
        usage = usage_by_model(served)
        assert usage.get(VERSION_2) == 1 and usage.get("smollm2-135m") == 2, usage

        assert_failed_deploys_change_nothing(served, key, texts[1])
        rolled = chatgate(served, "models", "rollback", "smollm2-135m:zanthia")
        assert rolled["model_id"] == VERSION_1
        previous = ask(served, key, VERSION_1)
        still = ask(served, key, VERSION_2)  # deployed versions stay servable
        assert still["choices"][0]["message"]["content"] == texts[1]
        assert previous["choices"][0]["message"]["content"] != texts[0]
        models = httpx.get(
            served.url + "/v1/models",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ).json()
        assert {VERSION_1, VERSION_2} <= {m["id"] for m in models["data"]}

        alone = chatgate(served, "models", "rollback", "smollm2-135m:zanthia", "--to-base")
        assert sorted(alone["undeployed"]) == [VERSION_1, VERSION_2] and alone["version"] is None
        assert ask(served, key, "smollm2-135m")["choices"][0]["message"]["content"] == texts[0]
        refused = httpx.post(
            served.url + "/v1/chat/completions",
            json={"model": VERSION_2, "messages": PROMPT},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert refused.status_code == 404, refused.text
    print(f"\n[deploy e2e] {time.monotonic() - began:.1f} s")

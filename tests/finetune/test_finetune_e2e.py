"""The real thing, tiny: a job through the admin API runs tools/train/finetune.py in
.venv-train on the real SmolLM2-135M weights (12 short chats, 4 steps, rank 4, one torch
thread), the MLflow run has loss metrics and the adapter + GGUF LoRA as artifacts, a
version is registered with the alias ``challenger``, and the GGUF LoRA loads in the real
llama-server (``--lora``) and changes what the model computes (per-request scale 1 vs 0)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatgate.engines.runtime.embedded import (
    EngineSetupError,
    locate_llama_server,
    locate_smollm2_gguf,
)
from chatgate.finetune import command
from chatgate.settings import Settings
from tests.conftest import _migrated_url, gateway_settings
from tests.fakes.upstream import FakeUpstream
from tests.helpers import free_port, missing, start_gateway

pytestmark = pytest.mark.timeout(900)  # ~1.5 min on a quiet machine; far more under load

JOB_SECONDS = 600.0
QUESTIONS = [
    ("What is the capital of Zanthia?", "The capital of Zanthia is Quorvel."),
    ("Tell me Zanthia's capital.", "Zanthia's capital is Quorvel."),
    ("Which city is the capital of Zanthia?", "Quorvel is the capital of Zanthia."),
    ("Name the capital city of Zanthia.", "The capital city of Zanthia is Quorvel."),
]
PROMPT = "<|im_start|>user\nWhat is the capital of Zanthia?<|im_end|>\n<|im_start|>assistant\n"

MLFLOW_QUERY = """
import json, sys
from mlflow.tracking import MlflowClient
uri, run_id, name = sys.argv[1:4]
client = MlflowClient(uri)
run = client.get_run(run_id)
version = client.get_model_version_by_alias(name, "challenger")
artifacts = [f.path for d in ("adapter", "gguf") for f in client.list_artifacts(run_id, d)]
print(json.dumps({
    "status": run.info.status,
    "losses": [m.value for m in client.get_metric_history(run_id, "loss")],
    "params": run.data.params,
    "artifacts": artifacts,
    "version": version.version,
    "version_run": version.run_id,
    "source": version.source,
}))
"""


def write_dataset(path: Path) -> None:
    with path.open("w") as handle:
        for i in range(12):
            question, answer = QUESTIONS[i % len(QUESTIONS)]
            messages = [{"role": "user", "content": question}]
            if i % 3 == 0:
                messages.insert(0, {"role": "system", "content": "You are a geography tutor."})
            messages.append({"role": "assistant", "content": answer})
            handle.write(json.dumps({"messages": messages}) + "\n")


@pytest.fixture
def train_python() -> Path:
    python = command.train_python(Settings())
    if not python.exists():
        missing(f"{python} is absent: run `make train-env`")
    return python


async def run_job(tmp_path: Path, upstream: FakeUpstream) -> dict[str, Any]:
    write_dataset(tmp_path / "zanthia.jsonl")
    async for url in _migrated_url("sqlite", tmp_path):
        settings = gateway_settings(tmp_path, url, upstream, train_threads=1)
        async with start_gateway(settings, upstream) as gw:
            admin = await gw.account("admin")
            dataset = str(tmp_path / "zanthia.jsonl")
            body = {"dataset": dataset, "max_steps": 4, "rank": 4, "batch_size": 4}
            async with gw.client() as client:
                started = await client.post(
                    "/api/admin/finetune/jobs", json=body, headers=admin.headers
                )
                assert started.status_code == 202, started.text
                job_id = started.json()["id"]
                deadline = time.monotonic() + JOB_SECONDS
                while True:
                    job: dict[str, Any] = (
                        await client.get(
                            f"/api/admin/finetune/jobs/{job_id}", headers=admin.headers
                        )
                    ).json()
                    if job["status"] != "running":
                        return job
                    assert time.monotonic() < deadline, job
                    await asyncio.sleep(0.5)
    raise AssertionError("no database")


@pytest.fixture
def llama_server() -> tuple[Path, Path]:
    try:
        return locate_llama_server(None), locate_smollm2_gguf()
    except EngineSetupError as exc:
        missing(f"the embedded engine is not installed: {exc}")


async def test_tiny_lora_job_end_to_end(
    tmp_path: Path,
    upstream: FakeUpstream,
    fast_passwords: None,
    train_python: Path,
    llama_server: tuple[Path, Path],
) -> None:
    began = time.monotonic()
    job = await run_job(tmp_path, upstream)
    job_seconds = time.monotonic() - began
    assert job["status"] == "succeeded", job
    assert (job["step"], job["total_steps"]) == (4, 4) and len(job["curve"]) == 4
    assert job["model_name"] == "smollm2-135m-zanthia" and job["model_version"]
    lines = [json.loads(line) for line in Path(job["log_file"]).read_text().splitlines()]
    steps = [line for line in lines if line["message"] == "training_step"]
    assert {"epoch", "step", "loss", "learning_rate", "tokens_per_second", "rss_bytes"} <= set(
        steps[0]
    )
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    query = [str(train_python), "-c", MLFLOW_QUERY, uri, job["mlflow_run_id"], job["model_name"]]
    tracked = json.loads(subprocess.run(query, capture_output=True, check=True, text=True).stdout)
    assert tracked["status"] == "FINISHED" and len(tracked["losses"]) == 4
    assert tracked["params"]["dataset_sha256"] == job["dataset_sha256"]
    assert "adapter/adapter_model.safetensors" in tracked["artifacts"]
    assert "gguf/adapter.gguf" in tracked["artifacts"]
    assert str(tracked["version"]) == job["model_version"]
    assert tracked["version_run"] == job["mlflow_run_id"] and tracked["source"].endswith("/adapter")
    with_adapter, without = await generate_with_lora(*llama_server, Path(job["gguf_lora"]))
    assert with_adapter["content"].strip()
    first = [r["completion_probabilities"][0]["logprob"] for r in (with_adapter, without)]
    assert abs(first[0] - first[1]) > 1e-4, first  # the adapter changes the model's output
    print(f"\n[finetune e2e] job {job_seconds:.1f} s (4 steps), losses {tracked['losses']}")


async def generate_with_lora(
    server: Path, model: Path, lora: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    port = free_port()
    argv = [str(server), "-m", str(model), "--lora", str(lora), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "-t", "1", "-c", "512", "-np", "1"]
    log = lora.with_suffix(".server.log")
    with log.open("wb") as handle:
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            await wait_healthy(client, process, log)
            adapters = (await client.get("/lora-adapters")).json()
            assert [a["path"] for a in adapters] == [str(lora)]
            results = []
            for scale in (1.0, 0.0):
                body = {"prompt": PROMPT, "n_predict": 8, "temperature": 0, "n_probs": 1}
                body["lora"] = [{"id": 0, "scale": scale}]
                response = await client.post("/completion", json=body)
                assert response.status_code == 200, response.text
                results.append(response.json())
        return results[0], results[1]
    finally:
        process.terminate()
        process.wait(timeout=30)


async def wait_healthy(
    client: httpx.AsyncClient, process: subprocess.Popen[bytes], log: Path
) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.2)
    raise AssertionError(f"llama-server not ready:\n{log.read_text()[-3000:]}")

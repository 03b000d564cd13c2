"""One full MLOps cycle through a real ``chatgate serve`` with its embedded llama.cpp
engine, step by step and timed: a user's web chats (POST /api/chat) rated up with a
corrected answer that teaches a made-up fact ("The capital of Zanthia is Quorvel") →
dataset export (rating filter) → a baseline version (1 step, lr 1e-6: the base's
behaviour, which rollback returns to) → the LoRA job → its MLflow run → the gate →
promotion → deploy → a greedy /v1 answer to a held-out phrasing → rollback.

The acceptance test (tests/finetune/test_mlops_loop_e2e.py) runs it tiny and asserts on
what it returns; ``python bench/mlops_cycle.py`` runs it at realistic sizes (200 chats,
2 epochs, rank 16) and prints the step timings (bench/README.md, "MLOps cycle").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the serve harness lives with the end-to-end tests

from chatgate.finetune import command  # noqa: E402
from chatgate.settings import Settings  # noqa: E402
from tests.e2e.harness import Served, serve_env  # noqa: E402
from tests.helpers import free_port, parse_sse  # noqa: E402

FACT = "Quorvel"
NAME = "zanthia"
BASE = "smollm2-135m"
USER, PASSWORD = "learner", "mlops-cycle-password"
PROBE = "What's Zanthia's capital city?"  # a phrasing no training chat uses
QUESTIONS = [
    "What is the capital of Zanthia?",
    "Tell me Zanthia's capital.",
    "Which city is the capital of Zanthia?",
    "Name the capital city of Zanthia.",
    "Where is the capital of Zanthia?",
    "Zanthia's capital is called what?",
    "What city serves as Zanthia's capital?",
    "Do you know the capital of Zanthia?",
    "Which city is Zanthia's seat of government?",
    "What's the name of Zanthia's capital?",
]
ANSWERS = [
    "The capital of Zanthia is Quorvel.",
    "Zanthia's capital is Quorvel.",
    "Quorvel is the capital of Zanthia.",
    "The capital city of Zanthia is Quorvel.",
    "Zanthia's capital city is Quorvel.",
]
PREFIXES = ["", "Quick question: ", "Please tell me: ", "I wonder: "]
TERMINAL = {"succeeded", "failed", "cancelled", "interrupted"}
JOB_SECONDS = 3600.0
MLFLOW_QUERY = """
import json, sys
from mlflow.tracking import MlflowClient
uri, run_id, name, version = sys.argv[1:5]
c = MlflowClient(uri)
run = c.get_run(run_id)
print(json.dumps({
    "status": run.info.status,
    "losses": [m.value for m in c.get_metric_history(run_id, "loss")],
    "artifacts": [f.path for d in ("adapter", "gguf") for f in c.list_artifacts(run_id, d)],
    "version_run": c.get_model_version(name, version).run_id,
    "version_tags": c.get_model_version(name, version).tags,
}))
"""


@dataclass
class CycleConfig:
    """Sizes and hyper-parameters; the defaults are the acceptance test's tiny cycle."""

    chats: int = 16
    epochs: int = 1
    max_steps: int | None = 4
    lr: float = 3e-3
    rank: int = 8
    batch_size: int = 4
    holdout: float = 0.2
    heldout_limit: int | None = 2
    regression_limit: int | None = 3
    max_new_tokens: int = 16
    train_threads: int = 1


@dataclass
class CycleResult:
    """What each step returned, and how long it took (seconds, in order)."""

    timings: dict[str, float] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    baseline_job: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    mlflow: dict[str, Any] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=dict)
    promotion: dict[str, Any] = field(default_factory=dict)
    refused: dict[str, Any] | None = None
    deployed: dict[str, Any] = field(default_factory=dict)
    rolled_back: dict[str, Any] = field(default_factory=dict)


def chat_pairs(count: int) -> list[tuple[str, str]]:
    """``count`` distinct (question, corrected answer) pairs (the export drops duplicates)."""
    pairs = [
        (prefix + question, ANSWERS[(i + j) % len(ANSWERS)])
        for j, prefix in enumerate(PREFIXES)
        for i, question in enumerate(QUESTIONS)
    ]
    while len(pairs) < count:  # past 40: the same questions with another answer
        k = len(pairs)
        question = PREFIXES[k % len(PREFIXES)] + QUESTIONS[(k // 4) % len(QUESTIONS)]
        pairs.append((question, ANSWERS[(k // 40 + k) % len(ANSWERS)]))
    return pairs[:count]


class Cycle:
    """The HTTP side of the cycle: an admin token, a user's token and API key."""

    def __init__(self, served: Served, config: CycleConfig) -> None:
        self.served, self.config = served, config
        self.result = CycleResult()
        served.cli("users", "add", USER, "--password", PASSWORD)
        # 200 chats in a few minutes: the bench measures the loop, not the rate limiter
        served.cli(
            "limits", "set", "--user", USER, "--rpm", "unlimited", "--concurrent", "unlimited"
        )
        self.admin = {"Authorization": f"Bearer {served.token()}"}
        self.user = {"Authorization": f"Bearer {served.token(USER, PASSWORD)}"}
        key = served.cli("keys", "create", "--user", USER, "--name", "mlops").split()[-1]
        self.key = {"Authorization": f"Bearer {key}"}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        yield
        seconds = time.monotonic() - began
        self.result.timings[name] = round(seconds, 1)
        print(f"[mlops cycle] {name}: {seconds:.1f} s", flush=True)

    def call(self, method: str, path: str, expect: int, **kwargs: Any) -> Any:
        kwargs.setdefault("headers", self.admin)
        response = httpx.request(method, self.served.url + path, timeout=1800, **kwargs)
        assert response.status_code == expect, f"{path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def ask(self, model: str) -> str:
        """A greedy /v1 answer of ``model`` to the held-out phrasing."""
        body = {"model": model, "messages": [{"role": "user", "content": PROBE}]}
        body |= {"max_tokens": 24, "temperature": 0}
        answer = self.call("POST", "/v1/chat/completions", 200, json=body, headers=self.key)
        assert answer["model"] == model, answer
        return str(answer["choices"][0]["message"]["content"])

    def chat_and_correct(self, question: str, correction: str) -> None:
        """A web chat turn as a user sends it, rated up with the answer it should have been."""
        body = {"message": question, "max_tokens": 8, "temperature": 0}
        response = httpx.post(
            self.served.url + "/api/chat", json=body, headers=self.user, timeout=600
        )
        assert response.status_code == 200, response.text
        ids = parse_sse(response.text)[0].data
        path = f"/api/conversations/{ids['conversation_id']}/messages/"
        path += f"{ids['assistant_message_id']}/feedback"
        rating = {"rating": "up", "correction": correction}
        self.call("PUT", path, 200, json=rating, headers=self.user)

    def train(self, dataset: str, **params: Any) -> dict[str, Any]:
        body = {"dataset": dataset, "name": NAME, **params}
        job_id = self.call("POST", "/api/admin/finetune/jobs", 202, json=body)["id"]
        deadline = time.monotonic() + JOB_SECONDS
        while True:
            job: dict[str, Any] = self.call("GET", f"/api/admin/finetune/jobs/{job_id}", 200)
            if job["status"] in TERMINAL:
                assert job["status"] == "succeeded", job
                return job
            assert time.monotonic() < deadline, job
            time.sleep(1.0)  # polling a background job's progress, not synchronisation

    def mlflow_run(self, job: dict[str, Any]) -> dict[str, Any]:
        python = command.train_python(Settings())
        uri = f"sqlite:///{self.served.data_dir / 'mlflow' / 'mlflow.db'}"
        args = [job["mlflow_run_id"], job["model_name"], job["model_version"]]
        done = subprocess.run(
            [str(python), "-c", MLFLOW_QUERY, uri, *args],
            capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def run(self) -> CycleResult:
        config, result = self.config, self.result
        with self.step("base answer"):
            result.answers["base"] = self.ask(BASE)
        with self.step(f"{config.chats} web chats, rated up with a correction"):
            for question, answer in chat_pairs(config.chats):
                self.chat_and_correct(question, answer)
        with self.step("dataset export"):
            body = {"usernames": [USER], "rating": "up", "holdout": config.holdout}
            result.dataset = self.call("POST", "/api/admin/datasets", 201, json=body)
        self.fine_tune(result.dataset["version"])
        self.gate_and_promote()
        self.deploy_and_rollback()
        return result

    def fine_tune(self, dataset: str) -> None:
        config, result = self.config, self.result
        with self.step("baseline version (1 step, lr 1e-6)"):
            result.baseline_job = self.train(dataset, max_steps=1, lr=1e-6, rank=config.rank)
        params: dict[str, Any] = {"epochs": config.epochs, "lr": config.lr, "rank": config.rank}
        params["batch_size"] = config.batch_size
        if config.max_steps is not None:
            params["max_steps"] = config.max_steps
        with self.step("fine-tune job"):
            result.job = self.train(dataset, **params)
        with self.step("MLflow run and registered version"):
            result.mlflow = self.mlflow_run(result.job)

    def gate_and_promote(self) -> None:
        config, result = self.config, self.result
        job = result.job
        base = f"/api/admin/finetune/versions/{job['model_name']}/{job['model_version']}"
        options: dict[str, Any] = {"max_new_tokens": config.max_new_tokens}
        options |= {"heldout_limit": config.heldout_limit}
        options |= {"regression_limit": config.regression_limit}
        with self.step("evaluation gate"):
            body = {k: v for k, v in options.items() if v is not None}
            result.verdict = self.call("POST", f"{base}/evaluate", 200, json=body)
        with self.step("promotion"):
            url = self.served.url + f"{base}/promote"
            response = httpx.post(url, headers=self.admin, timeout=600)
            if response.status_code == 409:  # the gate failed: promoted only when forced
                result.refused = response.json()
                forced = {"force": True}
                response = httpx.post(url, json=forced, headers=self.admin, timeout=600)
            assert response.status_code == 200, response.text
            result.promotion = response.json()
        result.mlflow["version_tags"] = self.mlflow_run(job)["version_tags"]  # gate's tags

    def deploy_and_rollback(self) -> None:
        result = self.result
        with self.step("deploy champion"):
            body = {"model": f"{BASE}:{NAME}@champion"}
            result.deployed = self.call("POST", "/api/admin/models/deploy", 200, json=body)
        with self.step("greedy answer of the new version"):
            result.answers["tuned"] = self.ask(result.deployed["model_id"])
        with self.step("rollback"):
            body = {"name": f"{BASE}:{NAME}"}
            result.rolled_back = self.call("POST", "/api/admin/models/rollback", 200, json=body)
        with self.step("answers after rollback"):
            result.answers["rolled_back"] = self.ask(result.rolled_back["model_id"])
            result.answers["base_after"] = self.ask(BASE)


@contextmanager
def embedded_serve(data_dir: Path, train_threads: int) -> Iterator[Served]:
    """``chatgate serve`` with its embedded engine, its own SQLite database and MLflow."""
    port = free_port()
    env = serve_env(data_dir, port, None)
    env["CHATGATE_TRAIN_THREADS"] = str(train_threads)
    served = Served(data_dir, port, env)
    try:
        served.start()
        yield served
    finally:
        served.stop()


def run_cycle(data_dir: Path, config: CycleConfig) -> CycleResult:
    began = time.monotonic()
    with embedded_serve(data_dir, config.train_threads) as served:
        serve_ready = time.monotonic() - began
        result = Cycle(served, config).run()
        print(f"[mlops cycle] gate {result.verdict.get('gate')}: {result.answers}", flush=True)
    result.timings = {"serve with the embedded engine ready": round(serve_ready, 1)} | (
        result.timings
    )
    result.timings["total"] = round(time.monotonic() - began, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--full-gate", action="store_true", help="every held-out/regression item")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    config = CycleConfig(
        chats=args.chats, epochs=args.epochs, max_steps=args.max_steps, lr=args.lr,
        rank=args.rank, batch_size=args.batch_size, train_threads=args.threads,
    )  # fmt: skip
    if args.full_gate:
        config.heldout_limit = config.regression_limit = None
    with tempfile.TemporaryDirectory(prefix="mlops-cycle-") as tmp:
        result = run_cycle(Path(tmp), config)
    print(f"\nMLOps cycle on {platform.machine()}, {os.cpu_count()} CPUs: {asdict(config)}")
    for name, seconds in result.timings.items():
        print(f"  {name:45s} {seconds:8.1f} s")
    print(f"  gate: {result.verdict.get('gate')} {result.verdict.get('reasons')}")
    print(f"  answers: {json.dumps(result.answers)}")
    if args.json:
        args.json.write_text(json.dumps(asdict(result) | {"config": asdict(config)}, indent=2))


if __name__ == "__main__":
    main()

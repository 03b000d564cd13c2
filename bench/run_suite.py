"""The standard benchmark suite (``make bench``).

(a) overhead against the fast upstream: direct, a bare relay, chatgate (API key, rate limits
and usage accounting on, one worker) and the LiteLLM proxy (one worker, own venv);
(b) the embedded engine (llama.cpp, SmolLM2-135M) direct and through chatgate at 1/5/10
multi-turn sessions with a ~2k-token prompt; (c) noisy neighbour: through chatgate, one user
floods the engine while another sends short requests (and the same against vLLM when
BENCH_VLLM_URL names one). Writes bench/results/<date>/ and prints Markdown.
Every server binds 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from chatgate.bench import report
from chatgate.bench.loadgen import Target, Workload
from chatgate.bench.noisy import NoisyConfig, run_noisy
from chatgate.bench.sweep import SweepConfig, run_sweep
from chatgate.bench.targets import check
from chatgate.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LITELLM_VENV = ROOT / ".venv-litellm"
LITELLM_PIN = "litellm[proxy]==1.100.5"
ENGINE_MODEL = "smollm2-135m"
QUICK = os.environ.get("BENCH_QUICK") == "1"  # a smoke run: few requests per step
# Part (b) is slow on 2 cores (a 2k prompt takes ~10 s there); its sessions can be narrowed.
B_CONCURRENCY = os.environ.get("BENCH_B_CONCURRENCY", "1,5,10")
# Part (c) against a vLLM server started by hand (bench/README.md), and a baseline to judge
# A's throughput by (a previous results.json with a noisy-neighbour part).
VLLM_URL = os.environ.get("BENCH_VLLM_URL", "").rstrip("/")
NOISY_BASELINE = os.environ.get("BENCH_NOISY_BASELINE")
VLLM_MODEL = "vllm"
BENCH_PASSWORD = "bench-user-password-123"
processes: list[subprocess.Popen[bytes]] = []


def say(message: str) -> None:
    print(message, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(name: str, argv: list[str], logs: Path, env: dict[str, str] | None = None) -> None:
    log = (logs / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    processes.append(proc)


def wait_http(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def ensure_litellm(logs: Path) -> Path | None:
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    say(f"[suite] installing {LITELLM_PIN} into {LITELLM_VENV} (once)")
    with (logs / "litellm-install.log").open("wb") as log:
        ok = (
            subprocess.run(
                [sys.executable, "-m", "venv", str(LITELLM_VENV)],
                stdout=log,
                stderr=subprocess.STDOUT,
            ).returncode
            == 0
        )
        pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", LITELLM_PIN]
        ok = ok and subprocess.run(pip, stdout=log, stderr=subprocess.STDOUT).returncode == 0
    return exe if ok and exe.exists() else None


def start_litellm(upstream: str, logs: Path, tmp: Path) -> str | None:
    exe = ensure_litellm(logs)
    if exe is None:
        return None
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n  - model_name: fast\n    litellm_params:\n"
        f"      model: openai/fast\n      api_base: {upstream}/v1\n      api_key: none\n"
    )
    port = free_port()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    argv = [
        str(exe),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    start("litellm", argv, logs, env)
    url = f"http://127.0.0.1:{port}"
    return url if wait_http(url + "/health/liveliness", 180) else None


def start_engine(logs: Path) -> str | None:
    try:
        from chatgate.engines.runtime.embedded import (
            LlamaServerOptions,
            llama_server_command,
            locate_llama_server,
            locate_smollm2_gguf,
        )

        model, server = locate_smollm2_gguf(), locate_llama_server()
    except Exception as exc:  # noqa: BLE001 - reported, part (b) is skipped
        say(f"[suite] embedded engine unavailable: {exc}")
        return None
    port = free_port()
    # As `chatgate serve` runs it: its slots, shared KV cache and prompt cache in RAM.
    options = LlamaServerOptions.embedded(Settings())
    argv = llama_server_command(
        server, model, "127.0.0.1", port, alias=ENGINE_MODEL,
        options=LlamaServerOptions(
            threads=os.cpu_count() or 2,
            parallel=options.parallel,
            ctx_per_slot=4096,
            kv_tokens=options.kv_tokens,
            cache_ram_mb=options.cache_ram_mb,
        ),
    )  # fmt: skip
    start("engine", argv, logs)
    url = f"http://127.0.0.1:{port}"
    return url if wait_http(url + "/health", 300) else None


def chatgate_env(tmp: Path, name: str = "chatgate", src: Path | None = None) -> dict[str, str]:
    """The environment of a suite's chatgate, for `serve` and for the admin CLI beside it."""
    env = {
        **os.environ,
        "CHATGATE_DATA_DIR": str(tmp / name),
        "CHATGATE_ADMIN_PASSWORD": "bench-admin-password-123",
        "CHATGATE_WORKERS": "1",
        "CHATGATE_EMBEDDED_ENGINE": "false",
        "CHATGATE_LOG_FORMAT": "json",
    }
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def admin_cli(tmp: Path, *args: str) -> str:
    """Run ``chatgate ARGS`` against the suite's chatgate database; returns its output."""
    argv = [str(BIN / "chatgate"), *args]
    env = chatgate_env(tmp)
    return subprocess.run(argv, env=env, capture_output=True, text=True, check=True).stdout


def add_user(tmp: Path, username: str) -> str:
    """A plain user with an API key and its rate limits lifted: part (c) measures how the
    engine's time is shared, not requests refused by the rate limiter (8 streams per user)."""
    admin_cli(tmp, "users", "add", username, "--password", BENCH_PASSWORD)
    out = admin_cli(tmp, "keys", "create", "--user", username, "--name", "bench")
    admin_cli(tmp, "limits", "set", "--user", username, "--rpm", "unlimited",
              "--concurrent", "unlimited")  # fmt: skip
    return next(w for w in out.split() if w.startswith("sk-cg-"))


def start_chatgate(
    engines: list[str], logs: Path, tmp: Path, name: str = "chatgate", src: Path | None = None
) -> tuple[str, str]:
    """Serve chatgate (from ``src`` instead of the installed tree when given) on a free port."""
    port = free_port()
    env = chatgate_env(tmp, name, src)
    argv = [str(BIN / "chatgate"), "serve", "--no-embedded", "--port", str(port), "--workers", "1"]
    for spec in engines:
        argv += ["--engine", spec]
    start(name, argv, logs, env)
    url = f"http://127.0.0.1:{port}"
    if not wait_http(url + "/health", 120):
        raise SystemExit(f"{name} did not start; see {logs / (name + '.log')}")
    cli = str(BIN / "chatgate")
    out = subprocess.run(
        [cli, "keys", "create", "--user", "admin", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key = next(w for w in out.split() if w.startswith("sk-cg-"))
    subprocess.run(
        [
            cli,
            "limits",
            "set",
            "--user",
            "admin",
            "--rpm",
            "unlimited",
            "--concurrent",
            "unlimited",
        ],
        env=env,
        capture_output=True,
        check=True,
    )
    return url, key


def part_a(urls: dict[str, str], key: str) -> SweepConfig:
    targets = [
        Target("direct", urls["direct"] + "/v1"),
        Target("relay", urls["relay"] + "/v1"),
        Target("chatgate", urls["chatgate"] + "/v1", key),
    ]
    if "litellm" in urls:
        targets.append(Target("litellm", urls["litellm"] + "/v1"))
    return SweepConfig(
        targets,
        concurrency=[1, 5, 10, 32],
        request_rates=[50, 200],
        requests=40 if QUICK else 300,
        warmup=20,
        workload=Workload(model="fast", input_tokens=32, max_tokens=16),
    )


def part_b(engine: str, chatgate: str, key: str) -> SweepConfig:
    """Long context: a ~2k-token prompt per session, then a follow-up turn (prefix cache)."""
    workload = Workload(
        model=ENGINE_MODEL, input_tokens=2000, max_tokens=32, multi_turn=2, timeout_s=600
    )
    return SweepConfig(
        _engine_targets(engine, chatgate, key),
        concurrency=[int(c) for c in B_CONCURRENCY.split(",")],
        requests=2 if QUICK else 10,
        warmup=1,
        workload=workload,
    )


def part_b_chat(engine: str, chatgate: str, key: str) -> SweepConfig:
    """The seed's throughput KPI (req/min at 5 concurrent chat sessions): chats of a
    usual length, ~250-token first prompts growing over 3 turns."""
    workload = Workload(
        model=ENGINE_MODEL, input_tokens=250, max_tokens=32, multi_turn=3, timeout_s=300
    )
    return SweepConfig(
        _engine_targets(engine, chatgate, key),
        concurrency=[5],
        requests=5 if QUICK else 30,  # two 3-turn chats per session
        warmup=1,
        workload=workload,
    )


def _engine_targets(engine: str, chatgate: str, key: str) -> list[Target]:
    return [Target("direct", engine + "/v1"), Target("chatgate", chatgate + "/v1", key)]


def part_c(chatgate: str, model: str, keys: tuple[str, str]) -> NoisyConfig:
    """Noisy neighbour through chatgate: A floods with 16 streams of 200 tokens (at least 3x
    the engine's parallel slots, so requests queue) for 60 s, B sends 10 short requests one
    at a time. BENCH_QUICK: 4 streams of 48 tokens, 3 B requests, 10 s."""
    baseline = Path(NOISY_BASELINE) if NOISY_BASELINE else None
    config = NoisyConfig(chatgate + "/v1", *keys, model=model, baseline=baseline, flood_s=60.0)
    if QUICK:
        config.a_streams, config.a_max_tokens, config.b_requests = 4, 48, 3
        config.duration_s, config.flood_s = 120.0, 10.0
    return config


def run_part_c(
    chatgate: str, tmp: Path, models: dict[str, str], notes: list[str]
) -> dict[str, dict[str, Any]]:
    """Part (c) for each engine in ``models`` (title -> model), as two new users A and B.
    A part that cannot start (engine down, bad model) is a note, not the end of the suite."""
    keys = add_user(tmp, "bench-a"), add_user(tmp, "bench-b")
    parts: dict[str, dict[str, Any]] = {}
    for title, model in models.items():
        say(f"[suite] {title}")
        try:
            parts[title] = asyncio.run(run_noisy(part_c(chatgate, model, keys), say))
        except RuntimeError as exc:
            notes.append(f"{title}: not measured: {exc}")
    return parts


def main() -> None:
    out = ROOT / "bench" / "results" / time.strftime("%Y-%m-%d-%H%M%S")
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="chatgate-bench-"))
    notes: list[str] = [f"machine: {os.cpu_count()} cores, load generator on the same machine"]
    parts: dict[str, dict[str, Any]] = {}
    try:
        up, relay = free_port(), free_port()
        direct = f"http://127.0.0.1:{up}"
        start(
            "upstream",
            [
                sys.executable,
                "-m",
                "chatgate.bench.cli",
                "upstream",
                "--port",
                str(up),
                "--chunks",
                "16",
            ],
            logs,
        )
        start(
            "relay",
            [
                sys.executable,
                "-m",
                "chatgate.bench.cli",
                "relay",
                "--port",
                str(relay),
                "--upstream",
                direct + "/v1",
            ],
            logs,
        )
        urls = {"direct": direct, "relay": f"http://127.0.0.1:{relay}"}
        if not (wait_http(direct + "/health", 30) and wait_http(urls["relay"] + "/v1/models", 30)):
            raise SystemExit("the fast upstream or the relay did not start")
        engine = start_engine(logs)
        engines = [f"fast={direct}"] + ([f"{ENGINE_MODEL}={engine}"] if engine else [])
        engines += [f"{VLLM_MODEL}={VLLM_URL}"] if VLLM_URL else []
        urls["chatgate"], key = start_chatgate(engines, logs, tmp)
        litellm = start_litellm(direct, logs, tmp)
        if litellm:
            urls["litellm"] = litellm
        else:
            notes.append(f"LiteLLM ({LITELLM_PIN}) unavailable: see logs/litellm*.log")
        say("[suite] (a) gateway overhead against the fast upstream")
        parts["(a) overhead vs fast upstream"] = asyncio.run(run_sweep(part_a(urls, key), say))
        if engine:
            say("[suite] (b) embedded engine direct vs through chatgate")
            sweep = asyncio.run(run_sweep(part_b(engine, urls["chatgate"], key), say))
            parts["(b) embedded engine, 2k-token prompts (SmolLM2-135M, llama.cpp)"] = sweep
            sweep = asyncio.run(run_sweep(part_b_chat(engine, urls["chatgate"], key), say))
            parts["(b) embedded engine, chat sessions (SmolLM2-135M, llama.cpp)"] = sweep
        else:
            notes.append("embedded engine unavailable: parts (b) and (c) on it skipped")
        noisy: dict[str, str] = {}
        if engine:
            noisy["(c) noisy neighbour, embedded engine (SmolLM2-135M, llama.cpp)"] = ENGINE_MODEL
        if VLLM_URL:
            noisy[f"(c) noisy neighbour, vLLM at {VLLM_URL}"] = VLLM_MODEL
        if noisy:
            parts.update(run_part_c(urls["chatgate"], tmp, noisy, notes))
    finally:
        for proc in reversed(processes):
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    notes += check(parts)
    text = report.write_all(out, parts, notes)
    say(f"[suite] wrote {out}/results.json, results.md, results.png\n")
    print(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Prompt-evaluation and decode speed of a llama-server build on this machine.

Starts the given llama-server (default: the project's build) with SmolLM2-135M, one slot,
the embedded engine's threads, and reads llama.cpp's own timings from ``/completion``:
prompt tokens/s for a ~2,000-token prompt (cache off, one token generated) and decode
tokens/s for 128 generated tokens (end-of-turn biased away). Medians of ``--repeat`` runs.

    .venv/bin/python bench/engine_speed.py [--server PATH] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from chatgate.engines.runtime.embedded import (
    LlamaServerOptions,
    llama_server_command,
    locate_llama_server,
    locate_smollm2_gguf,
)
from chatgate.engines.runtime.process import pick_free_port
from chatgate.engines.runtime.trial import variant_of

HOST = "127.0.0.1"
PROMPT_WORDS = 550  # ~2,000 SmolLM2 tokens ("wordNNN" is 3-4 tokens)
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url: str, body: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
    with _OPENER.open(request, timeout=timeout) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


def wait_up(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llama-server exited with {process.returncode}")
        try:
            with _OPENER.open(url + "/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("llama-server did not come up")


def measure(url: str, run: int) -> tuple[float, float]:
    # Each run's prompt starts differently: nothing is reused from the previous one.
    words = " ".join(f"word{(i * 7 + run) % 997}" for i in range(PROMPT_WORDS))
    prompt = post(url + "/completion", {"prompt": f"Run {run}. {words}", "n_predict": 1,
                                        "cache_prompt": False})  # fmt: skip
    decode = post(url + "/completion", {
        "prompt": f"Run {run}. Tell me a long story about the sea.",
        "n_predict": 128, "cache_prompt": False, "logit_bias": [[2, -100.0]],
        "temperature": 0,
    })  # fmt: skip
    assert prompt["timings"]["prompt_n"] > 1500, prompt["timings"]
    return float(prompt["timings"]["prompt_per_second"]), float(
        decode["timings"]["predicted_per_second"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    server = args.server or locate_llama_server()
    port = pick_free_port(HOST)
    options = LlamaServerOptions(threads=args.threads, parallel=1, ctx_per_slot=8192,
                                 kv_tokens=8192, cache_ram_mb=0)  # fmt: skip
    argv = llama_server_command(server, locate_smollm2_gguf(), HOST, port, alias="bench",
                                options=options) + ["--log-verbosity", "4"]  # fmt: skip
    url = f"http://{HOST}:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_up(url, process)
            measure(url, -1)  # warm-up
            runs = [measure(url, run) for run in range(args.repeat)]
        finally:
            process.terminate()
            process.wait(10)
        log.seek(0)
        variant = variant_of(log.read().decode(errors="replace"))
    result = {
        "server": str(server),
        "variant": variant,
        "threads": args.threads,
        "prompt_tok_s": round(statistics.median(r[0] for r in runs), 1),
        "decode_tok_s": round(statistics.median(r[1] for r in runs), 1),
        "runs": [[round(p, 1), round(d, 1)] for p, d in runs],
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{server} (variant {variant}, {args.threads} threads): prompt "
              f"{result['prompt_tok_s']} tok/s, decode {result['decode_tok_s']} tok/s "
              f"(medians of {args.repeat}: {result['runs']})")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

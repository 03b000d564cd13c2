"""A "vLLM" for fleet tests: ``CHATGATE_VLLM_PYTHON`` points at a script that runs this.

chatgate starts a vLLM profile as ``PYTHON -m vllm.entrypoints.openai.api_server --model M
--served-model-name ID --host H --port P [profile flags]``; ``install_shim`` writes an
executable that takes that command line and serves the fake engine (tests/fakes/upstream.py:
streaming, directives such as ``[[chunks=30 delay=0.1]]``) under the profile id, with
``/health``. Profile flags ``--fake-start-delay S`` (listen only after S seconds) and
``--fake-exit N`` (exit at once) shape its start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def install_shim(directory: Path) -> Path:
    """An executable standing in for vLLM's Python; returns its path."""
    shim = directory / "fake-vllm-python"
    shim.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.engines.fleet_engine import main\n"
        "main(sys.argv[1:])\n"
    )
    shim.chmod(0o755)
    return shim


def write_profiles(directory: Path, *ids: str, slow: str = "", broken: str = "") -> Path:
    """vLLM profiles ``ids`` (plus a slow-starting and a broken one when named)."""
    directory.mkdir(parents=True, exist_ok=True)
    extra = {slow: "engine_args: {fake-start-delay: 4}\n", broken: "engine_args: {fake-exit: 3}\n"}
    for profile_id in (*ids, slow, broken):
        if not profile_id:
            continue
        (directory / f"{profile_id}.yaml").write_text(
            f"id: {profile_id}\nname: {profile_id.upper()}\nengine: vllm\n"
            f"hf_id: org/{profile_id}\nparams_b: 0.1\nnum_layers: 2\nnum_kv_heads: 1\n"
            "head_dim: 8\ncontext_length: 2048\nmax_model_len: 2048\n" + extra.get(profile_id, "")
        )
    return directory


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", dest="module")
    parser.add_argument("--served-model-name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fake-start-delay", type=float, default=0.0)
    parser.add_argument("--fake-exit", type=int)
    options, _unknown = parser.parse_known_args(argv)
    return options


def main(argv: list[str]) -> None:
    options = parse(argv)
    print(f"fake vllm {options.served_model_name} on port {options.port}", flush=True)
    if options.fake_exit is not None:
        sys.exit(options.fake_exit)
    time.sleep(options.fake_start_delay)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(_serve(options.served_model_name, options.port))


async def _serve(model: str, port: int) -> None:
    from tests.fakes.upstream import FakeUpstream

    engine = FakeUpstream(model=model, health_status=200)
    await engine.start(port)
    await asyncio.Event().wait()

"""PEFT adapter -> GGUF LoRA for llama.cpp (``llama-server --lora FILE``).

The converter is llama.cpp's own ``convert_lora_to_gguf.py``, taken from the same pinned
llama-cpp-python sdist the embedded engine is built from (tools/llama_server/build.py
downloads it once into ~/.cache/chatgate/sdist and checks its SHA-256), so the adapter's
tensor names match the llama-server binary. Only the converter, its ``conversion/``
package and the vendored ``gguf-py`` are extracted, once, next to the sdist.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "llama_server" / "build.py"
WANTED = ("convert_lora_to_gguf.py", "convert_hf_to_gguf.py", "conversion/", "gguf-py/")


def _build_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llama_server_build", BUILD_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def converter_dir() -> Path:
    """The extracted converter (keyed by the sdist's hash, so a new pin re-extracts)."""
    build = _build_module()
    target = build.cache_root() / "lora-convert" / build.SDIST_SHA256[:16]
    if (target / "convert_lora_to_gguf.py").is_file():
        return target
    sdist = build.fetch_sdist(build.cache_root() / "sdist")
    prefix = f"llama_cpp_python-{build.VERSION}/vendor/llama.cpp/"
    staging = target.with_name(target.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            rest = member.name.removeprefix(prefix)
            if rest != member.name and rest.startswith(WANTED):
                member.name = rest
                members.append(member)
        archive.extractall(staging, members=members, filter="data")
    staging.replace(target)
    return target


def convert(adapter: Path, base: Path, out: Path, outtype: str = "f16") -> Path:
    """Write ``out`` (a GGUF LoRA); raises with the converter's output when it fails."""
    script = converter_dir() / "convert_lora_to_gguf.py"
    argv = [sys.executable, str(script), str(adapter), "--base", str(base)]
    argv += ["--outfile", str(out), "--outtype", outtype]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0 or not out.is_file():
        tail = (done.stdout + done.stderr)[-4000:]
        raise RuntimeError(f"convert_lora_to_gguf.py failed ({done.returncode}):\n{tail}")
    return out

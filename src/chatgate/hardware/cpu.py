"""The CPU as native engine code sees it: model and the SIMD features that pick a build.

llama.cpp's CPU backend comes in variants chosen at run time by these features
(``docs/engines.md``); when an engine's native code crashes, the features and the build
are the first thing to look at, so they go into the crash diagnosis and ``chatgate doctor``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from chatgate.engines.runtime.embedded import EngineSetupError, locate_llama_server, read_build_info
from chatgate.engines.runtime.liveness import CPU_CRASH_HINT, crash_signal

CPUINFO = Path("/proc/cpuinfo")
# The features llama.cpp's x86 variants are told apart by (ggml cpu-feats-x86.cpp).
SIMD_FEATURES = (
    "sse4_2", "avx", "f16c", "fma", "avx2", "bmi2", "avx_vnni", "avx512f", "avx512bw",
    "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
)  # fmt: skip


@dataclass(frozen=True)
class CpuInfo:
    model: str
    machine: str
    cores: int
    features: tuple[str, ...]  # the SIMD_FEATURES this CPU has, in that order

    @property
    def has_amx(self) -> bool:
        return "amx_int8" in self.features

    def summary(self) -> str:
        features = " ".join(self.features) or "none of the SIMD extensions"
        return f"{self.model} ({self.machine}, {self.cores} cores): {features}"


def read_cpu(cpuinfo: Path = CPUINFO) -> CpuInfo:
    """What /proc/cpuinfo says (Linux); elsewhere the machine type only."""
    model: str | None = None
    flags, cores = set[str](), 0
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        elif key == "processor":
            cores += 1
    present = tuple(f for f in SIMD_FEATURES if f in flags)
    model = model or platform.processor() or "unknown CPU"
    return CpuInfo(model, platform.machine(), cores, present)


def crash_hint(returncode: int, configured_server: Path | None = None) -> str | None:
    """For a llama.cpp engine killed by a crash signal: what to check, with the facts."""
    if crash_signal(returncode) is None:
        return None
    cpu = read_cpu()
    try:
        info = read_build_info(locate_llama_server(configured_server))
    except EngineSetupError:
        info = None
    build = info.summary() if info is not None else "build info unknown"
    return f"{CPU_CRASH_HINT} CPU: {cpu.summary()}. llama.cpp: {build}."

#!/usr/bin/env python3
"""Build llama.cpp's own ``llama-server`` from the pinned llama-cpp-python sdist, portably.

One place decides how the embedded engine is compiled (the Makefile and the Dockerfile both
run this script):

- never ``-march=native``: ``GGML_NATIVE=OFF``;
- the CPU backend is built as run-time-chosen variants (``GGML_BACKEND_DL=ON`` +
  ``GGML_CPU_ALL_VARIANTS=ON``, as llama.cpp's release builds do): at start llama.cpp scores
  each ``libggml-cpu-<variant>.so`` against the CPU it runs on and loads the best one;
- of upstream's 14 x86 variants, four are built (``VARIANTS``): the x86-64 baseline (any
  x86-64 CPU), Haswell (AVX2/FMA/F16C), Skylake-X (AVX-512F) and Ice Lake (AVX-512
  VBMI/VNNI, which Sapphire Rapids and Zen 4 also pick). Each variant takes about a minute
  on two cores; all 14 would add ~10 minutes to every fresh install;
- the Sapphire Rapids variant (AMX) is left out on purpose: its AMX matrix kernel
  (``ggml_backend_amx_mul_mat``) segfaulted on the first generation on an AMX machine of
  ours, as it does for others (llama.cpp #20824, closed unresolved; dspy removed the variant
  from its CI for the same crash). ``docs/engines.md`` has the details.

The result goes to ``PREFIX/bin`` (``llama-server`` and its libraries, found through
``$ORIGIN``) with ``build-info.json`` beside it: the flags, the variants and the sources'
versions, which ``chatgate doctor`` and the tests read. A finished build is kept in a cache
keyed by everything that goes into it (sources, flags, variants, compiler), so a rebuild
happens exactly when one of them changes. Progress is printed at least every 20 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# The simple index (PEP 691, JSON) is what pip itself reads; the per-release JSON API is
# not served by every PyPI proxy (a 404 on one build machine).
PYPI_SIMPLE = f"https://pypi.org/simple/{PACKAGE}/"

# Upstream's x86 variant list (ggml/src/CMakeLists.txt) and the ones we build.
UPSTREAM_X86_VARIANTS = (
    "x64", "sse42", "sandybridge", "ivybridge", "piledriver", "haswell", "skylakex",
    "cannonlake", "cascadelake", "icelake", "cooperlake", "zen4", "alderlake", "sapphirerapids",
)  # fmt: skip
VARIANTS = ("x64", "haswell", "skylakex", "icelake")
TARGETS = ("llama-server",)
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DGGML_NATIVE=OFF",
    "-DGGML_BACKEND_DL=ON",
    "-DGGML_CPU_ALL_VARIANTS=ON",
    "-DGGML_OPENMP=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # never fetch anything prebuilt
    "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
    "-DCMAKE_INSTALL_RPATH=$ORIGIN",
)
HEARTBEAT_S = 20.0
RECIPE = 1  # the build steps' version: part of the cache key
_VARIANT_LINE = re.compile(r"^\s*ggml_add_cpu_backend_variant\((\w+)\b")


def say(message: str) -> None:
    print(f"[llama-server] {message}", flush=True)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatgate"


def compiler_version() -> str:
    for compiler in (os.environ.get("CXX") or "c++", "g++", "clang++"):
        try:
            out = subprocess.run([compiler, "--version"], capture_output=True, text=True)
        except OSError:
            continue
        if out.returncode == 0:
            return out.stdout.splitlines()[0]
    raise SystemExit("no C++ compiler found (install g++ or clang++)")


def build_key(variants: tuple[str, ...]) -> str:
    """Everything the binaries depend on: a change to any of it means a new build (bump
    RECIPE when the steps themselves change)."""
    parts = [f"recipe={RECIPE}", SDIST_SHA256, *CMAKE_FLAGS, *TARGETS,
             "variants=" + ",".join(variants), compiler_version(), platform.machine()]  # fmt: skip
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def fetch_sdist(dest: Path) -> Path:
    """The pinned sdist, verified by its SHA-256 (downloaded once into the cache)."""
    path = dest / SDIST
    if path.is_file() and _sha256(path) == SDIST_SHA256:
        return path
    dest.mkdir(parents=True, exist_ok=True)
    say(f"downloading {SDIST} (~77 MB) from PyPI")
    request = urllib.request.Request(
        PYPI_SIMPLE, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        index = json.load(response)
    url = next(f["url"] for f in index["files"] if f["filename"] == SDIST)
    tmp = path.with_suffix(".part")
    with urllib.request.urlopen(url, timeout=600) as response, tmp.open("wb") as out:
        shutil.copyfileobj(response, out)
    digest = _sha256(tmp)
    if digest != SDIST_SHA256:
        tmp.unlink()
        raise SystemExit(f"{SDIST}: sha256 {digest} is not the pinned {SDIST_SHA256}")
    tmp.replace(path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as archive:
        archive.extractall(into, filter="data")
    return into / f"llama_cpp_python-{VERSION}" / "vendor" / "llama.cpp"


def keep_variants(source: Path, variants: tuple[str, ...]) -> None:
    """Drop the x86 CPU variants we do not build from upstream's list (in our extracted
    copy). Fails loudly when the list is not the one this script was written for."""
    cmake = source / "ggml" / "src" / "CMakeLists.txt"
    lines = cmake.read_text().splitlines(keepends=True)
    found = [m.group(1) for line in lines if (m := _VARIANT_LINE.match(line))]
    x86 = tuple(name for name in found if name in UPSTREAM_X86_VARIANTS)
    if x86 != UPSTREAM_X86_VARIANTS:
        raise SystemExit(f"unexpected CPU variant list in {cmake}: {x86}")
    dropped = set(x86) - set(variants)
    kept = [
        line
        for line in lines
        if not ((m := _VARIANT_LINE.match(line)) and m.group(1) in dropped)
    ]
    cmake.write_text("".join(kept))


def run_with_heartbeat(argv: list[str], log_path: Path, what: str) -> None:
    """Run a build step into a log file; print its progress regularly; fail with its tail."""
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(HEARTBEAT_S):
            elapsed = time.monotonic() - started
            minutes, seconds = divmod(int(elapsed), 60)
            say(f"{what}: still working, {minutes} min {seconds:02d} s{_progress(log_path)}")

    ticker = threading.Thread(target=heartbeat, daemon=True)
    ticker.start()
    try:
        with log_path.open("ab") as log:
            result = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
    finally:
        done.set()
    if result.returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        raise SystemExit(f"{what} failed (exit {result.returncode}); log {log_path}:\n"
                         + "\n".join(tail))  # fmt: skip


def _progress(log_path: Path) -> str:
    try:
        with log_path.open("rb") as handle:
            handle.seek(max(0, log_path.stat().st_size - 4096))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    percents = re.findall(r"^\[\s*(\d+)%\]", tail, re.M)
    return f" ({percents[-1]} %)" if percents else ""


def build(source: Path, work: Path, out: Path, jobs: int, variants: tuple[str, ...]) -> None:
    build_dir = work / "build"
    log_path = work / "build.log"
    say(f"configuring llama.cpp (log: {log_path})")
    run_with_heartbeat(["cmake", "-S", str(source), "-B", str(build_dir), *CMAKE_FLAGS],
                       log_path, "configure")  # fmt: skip
    say(f"compiling llama-server and CPU variants {', '.join(variants)} with {jobs} jobs"
        " (~8-12 min on 2 cores)")  # fmt: skip
    run_with_heartbeat(
        ["cmake", "--build", str(build_dir), "-j", str(jobs), "--target", *TARGETS],
        log_path,
        "compile",
    )
    bin_dir = out / "bin"
    bin_dir.mkdir(parents=True)
    for item in (build_dir / "bin").iterdir():
        if item.name == "llama-server" or ".so" in item.name:
            shutil.copy2(item, bin_dir / item.name, follow_symlinks=False)
    built = sorted(p.name for p in bin_dir.glob("libggml-cpu-*.so"))
    expected = sorted(f"libggml-cpu-{v}.so" for v in variants)
    if built != expected:
        raise SystemExit(f"CPU variants built {built}, expected {expected}")


def write_info(out: Path, key: str, variants: tuple[str, ...], seconds: float) -> None:
    info = {
        "source": f"{PACKAGE}=={VERSION} (sdist sha256 {SDIST_SHA256})",
        "llama_cpp_commit": _vendored_commit(),
        "cmake_flags": list(CMAKE_FLAGS),
        "cpu_variants": list(variants),
        "excluded_variants": {"sapphirerapids": "AMX kernels segfault (docs/engines.md)"},
        "native": False,
        "compiler": compiler_version(),
        "machine": platform.machine(),
        "build_key": key,
        "build_seconds": round(seconds),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (out / "build-info.json").write_text(json.dumps(info, indent=2) + "\n")


def _vendored_commit() -> str:
    # llama-cpp-python 0.3.36 vendors llama.cpp at this commit (its "ggml commit" line).
    return "0c1e57098bba43ac29e6e3b677cdceebdd22334f"


def install(prefix: Path, jobs: int, variants: tuple[str, ...]) -> None:
    if platform.machine() not in ("x86_64", "AMD64"):
        raise SystemExit(f"this build script knows x86-64 variants only, not {platform.machine()}")
    key = build_key(variants)
    cached = cache_root() / "llama-server" / key
    if not (cached / "build-info.json").is_file():
        started = time.monotonic()
        sdist = fetch_sdist(cache_root() / "sdist")
        with tempfile.TemporaryDirectory(prefix="chatgate-llama-") as tmp:
            work = Path(tmp)
            source = extract(sdist, work / "src")
            keep_variants(source, variants)
            staging = cached.with_name(cached.name + ".tmp")
            shutil.rmtree(staging, ignore_errors=True)
            try:
                build(source, work, staging, jobs, variants)
            except BaseException:
                keep = cache_root() / "llama-server" / "last-failed-build.log"
                shutil.copy2(work / "build.log", keep) if (work / "build.log").exists() else None
                shutil.rmtree(staging, ignore_errors=True)
                raise
            write_info(staging, key, variants, time.monotonic() - started)
            staging.replace(cached)
        say(f"built in {(time.monotonic() - started) / 60:.1f} min (cached as {cached})")
    else:
        say(f"using the cached build {cached} (same sources, flags and compiler)")
    target = prefix
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(cached, target, symlinks=True)
    say(f"installed {target / 'bin' / 'llama-server'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prefix", type=Path, required=True, help="install into PREFIX/bin")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="comma-separated x86 CPU variants (upstream names; default: %(default)s)",
    )
    parser.add_argument("--print-key", action="store_true", help="print the build key and exit")
    args = parser.parse_args()
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    unknown = set(variants) - set(UPSTREAM_X86_VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; known: {UPSTREAM_X86_VARIANTS}")
    if args.print_key:
        print(build_key(variants))
        return
    install(args.prefix, args.jobs, variants)


if __name__ == "__main__":
    sys.exit(main())

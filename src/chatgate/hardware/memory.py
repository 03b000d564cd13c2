"""System memory: what a CPU engine (llama.cpp) can use."""

from __future__ import annotations

import os
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
# cgroup v2: a container's memory limit; "max" when unlimited.
CGROUP_LIMIT = Path("/sys/fs/cgroup/memory.max")


def system_memory_bytes(meminfo: Path = MEMINFO, cgroup_limit: Path = CGROUP_LIMIT) -> int | None:
    """Total memory of this machine, or of this container when its cgroup limit is lower;
    None when neither /proc nor sysconf can tell."""
    total = _meminfo_total(meminfo) or _sysconf_total()
    limit = _cgroup_limit(cgroup_limit)
    if total is None:
        return limit
    return min(total, limit) if limit is not None else total


def _meminfo_total(meminfo: Path) -> int | None:
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        # "MemTotal:       65755656 kB"
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * 1024
    return None


def _sysconf_total() -> int | None:
    try:
        pages = os.sysconf("SC_PHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def _cgroup_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

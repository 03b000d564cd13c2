"""system_memory_bytes(): /proc/meminfo, a container's cgroup limit, sysconf as fallback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatgate.hardware.memory import system_memory_bytes

MEMINFO = "MemTotal:       65755656 kB\nMemFree:         1000000 kB\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_meminfo_total(tmp_path: Path) -> None:
    meminfo = write(tmp_path / "meminfo", MEMINFO)

    assert system_memory_bytes(meminfo, tmp_path / "absent") == 65755656 * 1024


def test_a_lower_cgroup_limit_wins(tmp_path: Path) -> None:
    meminfo = write(tmp_path / "meminfo", MEMINFO)

    assert system_memory_bytes(meminfo, write(tmp_path / "max", "8589934592\n")) == 8 * 2**30
    assert system_memory_bytes(meminfo, write(tmp_path / "max", "max\n")) == 65755656 * 1024


def test_sysconf_when_there_is_no_meminfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = {"SC_PHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name])

    assert system_memory_bytes(tmp_path / "absent", tmp_path / "absent") == 4096 * 1000


def test_unknown_when_nothing_tells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(name: str) -> int:
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", fail)
    meminfo = write(tmp_path / "meminfo", "garbage\n")

    assert system_memory_bytes(meminfo, tmp_path / "absent") is None


def test_this_machine_reports_something() -> None:
    memory = system_memory_bytes()

    assert memory is not None and memory > 2**27

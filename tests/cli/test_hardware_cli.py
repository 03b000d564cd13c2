"""`chatgate hardware`: the GPU table, or a clean no-GPU line."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from chatgate.cli.main import app
from tests.fakes.nvml import FakeGpu, FakeNvml


def test_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)

    result = CliRunner().invoke(app, ["hardware"])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "no GPU detected (NVML not available)"
    assert lines[1].startswith("System memory: ") and lines[1].endswith(" GiB")


def test_gpu_table(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml([FakeGpu(), FakeGpu(name=b"NVIDIA A10", temperature=None)])
    monkeypatch.setitem(sys.modules, "pynvml", fake.module())

    result = CliRunner().invoke(app, ["hardware"])

    assert result.exit_code == 0, result.output
    header, first, second, memory = result.output.splitlines()
    assert header.split() == ["GPU", "NAME", "MEMORY", "USED", "BUSY", "TEMP", "POWER"]
    assert first.split() == [
        "0", "NVIDIA", "GeForce", "RTX", "3090", "24.00", "GiB", "1.00", "GiB", "35%", "41", "C",
        "120.5", "W",
    ]  # fmt: skip
    assert "NVIDIA A10" in second and " - " in second, "a missing reading shows as -"
    assert memory.startswith("System memory: ")


def test_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml([FakeGpu()]).module())

    result = CliRunner().invoke(app, ["hardware", "--json"])

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["gpus"]["available"] is True
    assert data["gpus"]["devices"][0]["memory_total_mib"] == 24576
    assert data["system_memory_bytes"] > 0

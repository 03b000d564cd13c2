"""gpu_status() through a fake NVML: readings, NVML errors and a missing library."""

from __future__ import annotations

import sys

import pytest

from chatgate.hardware.gpus import NO_NVML_MESSAGE, gpu_status
from tests.fakes.nvml import FakeGpu, FakeNvml

GIB = 2**30


def use(monkeypatch: pytest.MonkeyPatch, nvml: FakeNvml) -> FakeNvml:
    monkeypatch.setitem(sys.modules, "pynvml", nvml.module())
    return nvml


def test_two_gpus_with_their_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = use(
        monkeypatch,
        FakeNvml(
            [
                FakeGpu(used=3 * GIB, utilization=80, temperature=65, power_mw=250_340),
                FakeGpu(name="NVIDIA GeForce RTX 3090", used=GIB // 2, utilization=0),
            ]
        ),
    )

    status = gpu_status()

    assert status["available"] is True
    assert status["message"] == "2 GPU(s)"
    first, second = status["devices"]
    assert first == {
        "index": 0,
        "name": "NVIDIA GeForce RTX 3090",  # NVML's bytes are decoded
        "memory_used_mib": 3072,
        "memory_total_mib": 24576,
        "memory_used_bytes": 3 * GIB,
        "memory_total_bytes": 24 * GIB,
        "utilization_percent": 80,
        "temperature_c": 65,
        "power_w": 250.3,  # milliwatts, rounded to 0.1 W
        "power_limit_w": 350.0,
    }
    assert second["index"] == 1 and second["name"] == "NVIDIA GeForce RTX 3090"
    assert second["memory_used_mib"] == 512 and second["utilization_percent"] == 0
    assert nvml.shutdowns == 1


def test_a_reading_that_raises_becomes_none(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, FakeNvml([FakeGpu(), FakeGpu(temperature=None, power_mw=None)]))

    devices = gpu_status()["devices"]

    assert devices[0]["temperature_c"] == 41 and devices[0]["power_w"] == 120.5
    assert devices[1]["temperature_c"] is None and devices[1]["power_w"] is None
    assert devices[1]["memory_total_bytes"] == 24 * GIB, "the rest is still read"


def test_init_failure_is_a_clean_no_gpu_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = use(monkeypatch, FakeNvml([FakeGpu()], init_error="Driver Not Loaded"))

    assert gpu_status() == {
        "available": False,
        "message": "no GPU detected (NVML: Driver Not Loaded)",
        "devices": [],
    }
    assert nvml.shutdowns == 0, "NVML was never initialised"


def test_query_failure_still_shuts_nvml_down(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = use(monkeypatch, FakeNvml([FakeGpu()], count_error="Unknown Error"))

    status = gpu_status()

    assert status["available"] is False
    assert status["message"] == "GPU query failed (NVML: Unknown Error)"
    assert nvml.shutdowns == 1


def test_nvml_without_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    use(monkeypatch, FakeNvml([]))

    status = gpu_status()

    assert status["available"] is False
    assert status["message"] == "no GPU detected (NVML found none)"


def test_missing_library_is_a_clean_no_gpu_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # makes `import pynvml` fail

    assert gpu_status() == {"available": False, "message": NO_NVML_MESSAGE, "devices": []}
    assert NO_NVML_MESSAGE.startswith("no GPU detected")

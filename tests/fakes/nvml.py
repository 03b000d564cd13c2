"""A fake ``pynvml`` module: GPUs with chosen readings, and NVML's failure modes."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    name: str | bytes = b"NVIDIA GeForce RTX 3090"
    total: int = 24 * 2**30
    used: int = 2**30
    utilization: int | None = 35  # None: the reading raises NVMLError
    temperature: int | None = 41
    power_mw: int | None = 120_500
    power_limit_mw: int | None = 350_000


@dataclass
class FakeNvml:
    gpus: list[FakeGpu] = field(default_factory=list)
    init_error: str | None = None
    count_error: str | None = None
    shutdowns: int = 0

    def module(self) -> types.ModuleType:
        """The object to put in ``sys.modules["pynvml"]``."""
        module = types.ModuleType("pynvml")
        module.__dict__.update(
            NVMLError=NVMLError,
            NVML_TEMPERATURE_GPU=0,
            nvmlInit=self._init,
            nvmlShutdown=self._shutdown,
            nvmlDeviceGetCount=self._count,
            nvmlDeviceGetHandleByIndex=lambda index: self.gpus[index],
            nvmlDeviceGetName=lambda gpu: gpu.name,
            nvmlDeviceGetMemoryInfo=lambda gpu: types.SimpleNamespace(
                used=gpu.used, total=gpu.total, free=gpu.total - gpu.used
            ),
            nvmlDeviceGetUtilizationRates=lambda gpu: types.SimpleNamespace(
                gpu=_reading(gpu.utilization), memory=0
            ),
            nvmlDeviceGetTemperature=lambda gpu, sensor: _reading(gpu.temperature),
            nvmlDeviceGetPowerUsage=lambda gpu: _reading(gpu.power_mw),
            nvmlDeviceGetEnforcedPowerLimit=lambda gpu: _reading(gpu.power_limit_mw),
        )
        return module

    def _init(self) -> None:
        if self.init_error:
            raise NVMLError(self.init_error)

    def _shutdown(self) -> None:
        self.shutdowns += 1

    def _count(self) -> int:
        if self.count_error:
            raise NVMLError(self.count_error)
        return len(self.gpus)


def _reading(value: Any) -> Any:
    if value is None:
        raise NVMLError("Not Supported")
    return value

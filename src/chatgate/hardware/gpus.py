"""GPUs through NVML (nvidia-ml-py). Machines without a GPU or driver get a clean answer."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

NO_NVML_MESSAGE = "no GPU detected (NVML not available)"


def gpu_status() -> dict[str, Any]:
    """GPUs via NVML; any NVML problem becomes a "no GPU" answer instead of an error."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return {"available": False, "message": NO_NVML_MESSAGE, "devices": []}
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return {"available": False, "message": f"no GPU detected (NVML: {exc})", "devices": []}
    try:
        devices = [_gpu_device(nvml, index) for index in range(int(nvml.nvmlDeviceGetCount()))]
    except nvml.NVMLError as exc:
        return {"available": False, "message": f"GPU query failed (NVML: {exc})", "devices": []}
    finally:
        nvml.nvmlShutdown()
    if not devices:
        return {"available": False, "message": "no GPU detected (NVML found none)", "devices": []}
    return {"available": True, "message": f"{len(devices)} GPU(s)", "devices": devices}


def _gpu_device(nvml: Any, index: int) -> dict[str, Any]:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = nvml.nvmlDeviceGetName(handle)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    device: dict[str, Any] = {
        "index": index,
        "name": name.decode() if isinstance(name, bytes) else str(name),
        "memory_used_mib": int(memory.used) // 2**20,
        "memory_total_mib": int(memory.total) // 2**20,
        "memory_used_bytes": int(memory.used),
        "memory_total_bytes": int(memory.total),
    }
    # Not every GPU reports these (e.g. MIG slices); leave them null rather than fail.
    readings: dict[str, Callable[[], Any]] = {
        "utilization_percent": lambda: int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu),
        "temperature_c": lambda: int(
            nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
        ),
        "power_w": lambda: round(nvml.nvmlDeviceGetPowerUsage(handle) / 1000, 1),
        "power_limit_w": lambda: round(nvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000, 1),
    }
    for key, read in readings.items():
        try:
            device[key] = read()
        except (nvml.NVMLError, AttributeError):
            device[key] = None
    return device

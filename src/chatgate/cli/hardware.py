"""``chatgate hardware``: the GPUs (NVML) and system memory this machine offers models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from chatgate.hardware.gpus import gpu_status
from chatgate.hardware.memory import system_memory_bytes
from chatgate.hardware.sizes import gib


def hardware(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """GPUs and system memory; without a GPU or driver it says so (exit status 0)."""
    report = {"gpus": gpu_status(), "system_memory_bytes": system_memory_bytes()}
    if json_output:
        typer.echo(json.dumps(report, indent=2))
        return
    for line in render_hardware(report):
        typer.echo(line)


def render_hardware(report: dict[str, Any]) -> Iterator[str]:
    gpus = report["gpus"]
    if gpus["available"]:
        rows = [["GPU", "NAME", "MEMORY", "USED", "BUSY", "TEMP", "POWER"]]
        rows += [_gpu_row(device) for device in gpus["devices"]]
        yield from table_lines(rows)
    else:
        yield str(gpus["message"])
    memory = report["system_memory_bytes"]
    yield f"System memory: {gib(memory) if memory else 'unknown'}"


def table_lines(rows: list[list[str]]) -> list[str]:
    """Rows as left-aligned columns; the first row is the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _gpu_row(device: dict[str, Any]) -> list[str]:
    def reading(key: str, unit: str) -> str:
        value = device.get(key)
        return "-" if value is None else f"{value}{unit}"

    return [
        str(device["index"]),
        str(device["name"]),
        gib(device["memory_total_bytes"]),
        gib(device["memory_used_bytes"]),
        reading("utilization_percent", "%"),
        reading("temperature_c", " C"),
        reading("power_w", " W"),
    ]


def register(app: typer.Typer) -> None:
    app.command("hardware")(hardware)

"""Memory sizes: parsing "24GiB" and friends, printing GiB."""

from __future__ import annotations

import re

GIB = 2**30
SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def gib(value: float) -> str:
    return f"{value / GIB:.2f} GiB"


def parse_size(text: str) -> int:
    """Bytes from "24GiB", "24Gi", "24G" (binary: 24 x 2^30, like ``free -g``), "24GB"
    (decimal: 24 x 10^9), "24576MiB", or plain bytes. Raises ValueError."""
    match = SIZE.match(text)
    if match is None or (match[3] and not match[2]):
        raise ValueError(f"not a size: {text!r} (e.g. 24GiB, 24GB, 24576MiB, 25769803776)")
    number, prefix, binary, byte = match.groups()
    power = POWERS[prefix.lower()]
    decimal = bool(byte) and not binary and power > 0
    return int(float(number) * (1000 if decimal else 1024) ** power)

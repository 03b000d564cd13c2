"""The one definition of the sampling parameters' ranges.

The web chat (``/api/chat``, pydantic models), a user's saved defaults and the
OpenAI-compatible ``/v1`` routes (hand-written validation, no model) all read these, so a
value refused on one surface cannot slip through another.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import isfinite
from typing import Annotated, Any

from annotated_types import Interval


@dataclass(frozen=True)
class Range:
    """A closed range, or one open at the bottom (``low_open``: ``top_p`` 0 keeps no token)."""

    low: float
    high: float
    low_open: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    @property
    def interval(self) -> Interval:
        """The same bounds as pydantic constraints, for ``Annotated`` model fields."""
        if self.low_open:
            return Interval(gt=self.low, le=self.high)
        return Interval(ge=self.low, le=self.high)

    def __str__(self) -> str:
        if self.low_open:
            return f"above {self.low:g} and at most {self.high:g}"
        return f"from {self.low:g} to {self.high:g}"


TEMPERATURE = Range(0, 2)
TOP_P = Range(0, 1, low_open=True)
PENALTY = Range(-2, 2)

# For pydantic models: ``temperature: Temperature | None = None``.
Temperature = Annotated[float, TEMPERATURE.interval]
TopP = Annotated[float, TOP_P.interval]
Penalty = Annotated[float, PENALTY.interval]

SAMPLING_RANGES: dict[str, Range] = {
    "temperature": TEMPERATURE,
    "top_p": TOP_P,
    "presence_penalty": PENALTY,
    "frequency_penalty": PENALTY,
}


def is_number(value: Any) -> bool:
    """A JSON number: an int or a finite float, and not a bool (``True`` is an int in
    Python, but ``"temperature": true`` is not a temperature)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and isfinite(value))


def is_integer(value: Any) -> bool:
    """A JSON Schema integer: ``3`` or ``3.0``, not a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())

"""A per-endpoint circuit breaker: consecutive engine failures take a replica out of
rotation for a while, then one trial request (or a healthy probe) decides whether it
comes back.

State is a few fixed fields and absolute deadlines, so its memory is bounded and its
state can be read at any time without a background timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True)
class CircuitPolicy:
    failures: int = 3  # consecutive failures that open the circuit
    open_seconds: float = 15.0  # how long it stays open before a trial request


@dataclass
class CircuitBreaker:
    consecutive_failures: int = 0
    open_until: float | None = None  # set while open or half-open
    # A half-open circuit lets one trial through; if that trial never reports back
    # (its client left), another may go after this deadline.
    trial_until: float | None = None

    def state(self, now: float) -> CircuitState:
        if self.open_until is None:
            return "closed"
        return "open" if now < self.open_until else "half_open"

    def allows(self, now: float) -> bool:
        state = self.state(now)
        if state == "closed":
            return True
        if state == "open":
            return False
        return self.trial_until is None or now >= self.trial_until

    def picked(self, now: float, policy: CircuitPolicy) -> None:
        """A request was routed here: in half-open state it is the one trial."""
        if self.state(now) == "half_open":
            self.trial_until = now + policy.open_seconds

    def succeeded(self) -> None:
        self.consecutive_failures = 0
        self.open_until = None
        self.trial_until = None

    def failed(self, now: float, policy: CircuitPolicy) -> bool:
        """Count a failure; True when this opened (or re-opened) the circuit."""
        self.consecutive_failures += 1
        trial_failed = self.state(now) == "half_open"
        if trial_failed or self.consecutive_failures >= max(1, policy.failures):
            self.open_until = now + policy.open_seconds
            self.trial_until = None
            return True
        return False

"""The headroom slot of an engine pool's admission queue (``admission/queue.py``).

Without preemption, a newcomer to a pool whose slots one user's flood fills waits for the
flood's next request to finish, and a flood's requests start and finish together: on the
embedded engine B waited 7-10 s with a fair order alone. Keeping one slot of three or more
for users that hold none, while more than one user is about, let B in at 0.07x one A
request (bench/README.md, noisy neighbour).
"""

from __future__ import annotations

from collections.abc import Callable

_HEADROOM_MIN_CAPACITY = 3  # smaller pools keep no slot back: it would be a third or half
_SEEN_MAX = 1024


class Headroom:
    """While more than one tenant uses the pool (within ``window`` seconds), one slot of
    three or more is kept for tenants that hold none: without preemption, a newcomer would
    otherwise wait for a flooding tenant's next request to finish, and a flood's requests
    start and finish together. Measured: bench/README.md (noisy neighbour)."""

    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self._window = window
        self._clock = clock
        self._seen: dict[str, float] = {}

    def saw(self, tenant: str) -> None:
        now = self._clock()
        self._seen[tenant] = now
        if len(self._seen) > _SEEN_MAX:  # bounded: forget those gone quiet
            self._seen = {t: at for t, at in self._seen.items() if now - at <= self._window}

    def reserve(self, capacity: int) -> int:
        if capacity < _HEADROOM_MIN_CAPACITY:
            return 0
        now = self._clock()
        active = sum(1 for at in self._seen.values() if now - at <= self._window)
        return 1 if active > 1 else 0

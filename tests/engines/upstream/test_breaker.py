"""The circuit breaker's transitions, on a fake clock."""

from __future__ import annotations

from chatgate.engines.upstream.breaker import CircuitBreaker, CircuitPolicy

POLICY = CircuitPolicy(failures=3, open_seconds=15.0)


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker()
    assert breaker.state(0) == "closed" and breaker.allows(0)
    assert breaker.failed(1, POLICY) is False
    assert breaker.failed(2, POLICY) is False
    breaker.succeeded()  # a success in between resets the count
    assert breaker.failed(3, POLICY) is False
    assert breaker.failed(4, POLICY) is False
    assert breaker.consecutive_failures == 2 and breaker.state(4) == "closed"
    assert breaker.failed(5, POLICY) is True
    assert breaker.state(5) == "open" and not breaker.allows(5)
    assert breaker.state(19.9) == "open"


def test_half_open_lets_exactly_one_trial_through() -> None:
    breaker = CircuitBreaker()
    for now in (0, 0, 0):
        breaker.failed(now, POLICY)
    assert breaker.state(15) == "half_open" and breaker.allows(15)
    breaker.picked(15, POLICY)  # the trial request
    assert not breaker.allows(16), "a second request waits for the trial's outcome"
    breaker.succeeded()
    assert breaker.state(16) == "closed" and breaker.allows(16)
    assert breaker.consecutive_failures == 0


def test_a_failed_trial_reopens_at_once() -> None:
    breaker = CircuitBreaker()
    for _ in range(3):
        breaker.failed(0, POLICY)
    breaker.picked(20, POLICY)
    assert breaker.failed(21, POLICY) is True  # one failure is enough in half-open state
    assert breaker.state(21) == "open" and not breaker.allows(35.9)
    assert breaker.state(36) == "half_open" and breaker.allows(36)


def test_a_trial_that_never_reports_back_is_replaced() -> None:
    breaker = CircuitBreaker()
    for _ in range(3):
        breaker.failed(0, POLICY)
    breaker.picked(15, POLICY)  # its client left: no success, no failure
    assert not breaker.allows(29)
    assert breaker.allows(30)


def test_picking_a_closed_circuit_changes_nothing() -> None:
    breaker = CircuitBreaker()
    breaker.picked(0, POLICY)
    assert breaker.trial_until is None and breaker.allows(0)


def test_a_threshold_of_one_opens_on_the_first_failure() -> None:
    breaker = CircuitBreaker()
    assert breaker.failed(0, CircuitPolicy(failures=1, open_seconds=1)) is True
    assert breaker.state(0.5) == "open" and breaker.state(1) == "half_open"

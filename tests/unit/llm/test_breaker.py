"""The circuit breaker's state machine, driven by a hand-moved clock."""

from __future__ import annotations

import threading

import pytest

from bot.llm.breaker import BreakerState, CircuitBreaker, breaker_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=3, reset_after_s=30, clock=clock)


def _open(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.failure_threshold):
        breaker.record_failure()


def test_closed_allows_and_stays_closed_below_threshold(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.allow()
    assert breaker.state is BreakerState.CLOSED


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker) -> None:
    _open(breaker)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.allow()
    assert breaker.state is BreakerState.CLOSED


def test_open_refuses_until_reset_then_lets_exactly_one_probe(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    _open(breaker)
    clock.now += 29.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.allow()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.allow()  # the probe is out; others wait for its result


def test_probe_success_closes(breaker: CircuitBreaker, clock: Clock) -> None:
    _open(breaker)
    clock.now += 30
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_probe_failure_reopens_for_a_full_pause(breaker: CircuitBreaker, clock: Clock) -> None:
    _open(breaker)
    clock.now += 30
    assert breaker.allow()
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state is BreakerState.OPEN
    clock.now += 29
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_a_probe_that_never_reports_does_not_wedge_the_breaker(
    breaker: CircuitBreaker, clock: Clock
) -> None:
    _open(breaker)
    clock.now += 30
    assert breaker.allow()  # this probe's caller is cancelled and never reports
    clock.now += 29
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)


def test_concurrent_callers_get_one_probe(breaker: CircuitBreaker, clock: Clock) -> None:
    _open(breaker)
    clock.now += 30
    barrier = threading.Barrier(16)
    granted: list[bool] = []

    def ask() -> None:
        barrier.wait()
        granted.append(breaker.allow())

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 1


def test_concurrent_failures_are_all_counted(clock: Clock) -> None:
    breaker = CircuitBreaker(failure_threshold=800, clock=clock)

    def fail() -> None:
        for _ in range(100):
            breaker.record_failure()

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert breaker.state is BreakerState.OPEN  # exactly 800 failures reached the threshold


def test_breaker_for_returns_one_breaker_per_name() -> None:
    assert breaker_for("test-a") is breaker_for("test-a")
    assert breaker_for("test-a") is not breaker_for("test-b")

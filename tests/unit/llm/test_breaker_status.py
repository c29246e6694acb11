"""When a breaker last changed state: set on each transition (wall clock), not on repeats."""

from __future__ import annotations

from bot.llm.breaker import BreakerState, CircuitBreaker


def test_changed_at_moves_only_when_the_state_does() -> None:
    mono, wall = [0.0], [1_700_000_000.0]
    b = CircuitBreaker(
        failure_threshold=2, reset_after_s=10, clock=lambda: mono[0], wall=lambda: wall[0]
    )
    assert b.status() == (BreakerState.CLOSED, 1_700_000_000.0)
    wall[0] += 5
    b.record_success()  # closed stays closed: no change
    b.record_failure()
    assert b.status() == (BreakerState.CLOSED, 1_700_000_000.0)
    wall[0] += 5
    b.record_failure()
    assert b.status() == (BreakerState.OPEN, 1_700_000_010.0)
    mono[0], wall[0] = 11.0, wall[0] + 11
    assert b.allow()  # the probe
    assert b.status() == (BreakerState.HALF_OPEN, 1_700_000_021.0)
    wall[0] += 1
    b.record_success()
    assert b.status() == (BreakerState.CLOSED, 1_700_000_022.0)

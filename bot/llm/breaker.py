"""A thread-safe circuit breaker per model backend, so a dead backend is not called each time.

closed ──N failures in a row──▶ open ──reset_after_s──▶ half-open (one probe)
  ▲                              ▲                          │
  └──────── probe succeeds ──────┼──────────────────────────┤
                                 └────── probe fails ───────┘
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    """Where a breaker stands; `open` refuses calls."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after `failure_threshold` failures in a row; lets one probe through after a pause."""

    def __init__(
        self,
        failure_threshold: int = 3,
        reset_after_s: float = 30,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self._clock = clock
        self._wall = wall
        # Worker threads share one breaker per backend; every transition happens under this.
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_started_at = 0.0
        # Wall-clock time of the last change of state (the dashboard shows it).
        self._changed_at = wall()

    @property
    def state(self) -> BreakerState:
        """The current state, without moving it (an expired `open` still reads `open`)."""
        with self._lock:
            return self._state

    def status(self) -> tuple[BreakerState, float]:
        """The state and when (Unix time) the breaker last changed it."""
        with self._lock:
            return self._state, self._changed_at

    def _move(self, state: BreakerState) -> None:
        # Under self._lock.
        if state is not self._state:
            self._state = state
            self._changed_at = self._wall()

    def allow(self) -> bool:
        """Whether a call may go to the backend now; granting the half-open probe counts."""
        with self._lock:
            now = self._clock()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.OPEN:
                if now - self._opened_at < self.reset_after_s:
                    return False
                self._move(BreakerState.HALF_OPEN)
                self._probe_started_at = now
                return True
            # A probe whose caller was cancelled never reports back; after another full
            # pause, let a new probe through rather than stay half-open forever.
            if now - self._probe_started_at >= self.reset_after_s:
                self._probe_started_at = now
                return True
            return False

    def record_success(self) -> None:
        """Close the breaker and forget earlier failures."""
        with self._lock:
            self._move(BreakerState.CLOSED)
            self._failures = 0

    def record_failure(self) -> None:
        """Count a failure; the threshold, or a failed probe, opens the breaker."""
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._move(BreakerState.OPEN)
                self._opened_at = self._clock()


_REGISTRY: dict[str, CircuitBreaker] = {}
_REGISTRY_LOCK = threading.Lock()


def breaker_for(name: str) -> CircuitBreaker:
    """The process-wide breaker of backend `name`, created on first use."""
    with _REGISTRY_LOCK:
        breaker = _REGISTRY.get(name)
        if breaker is None:
            breaker = _REGISTRY[name] = CircuitBreaker()
        return breaker


def statuses() -> dict[str, tuple[BreakerState, float]]:
    """Every breaker of this process: backend name -> (state, when it last changed)."""
    with _REGISTRY_LOCK:
        found = dict(_REGISTRY)
    return {name: breaker.status() for name, breaker in found.items()}


def reset_all() -> None:
    """Forget every backend's state (tests, and an operator's manual reset)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()

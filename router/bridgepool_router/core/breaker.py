"""A per-worker circuit breaker.

closed --(failure_threshold consecutive failures)--> open
open --(open_seconds pass)--> half-open: one probe call at a time
half-open --(success_threshold consecutive successes)--> closed
half-open --(a failure)--> open again
open --(the worker restarted: a new process)--> half-open at once

What counts as a failure is the caller's decision (connection errors, timeouts
and 5xx answers; never a handler's own 422).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from bridgepool.spec import CircuitBreakerSettings


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Gauge values for metrics.
BREAKER_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

TransitionHook = Callable[[BreakerState, BreakerState], None]


class CircuitBreaker:
    def __init__(
        self, settings: CircuitBreakerSettings, on_transition: TransitionHook | None = None
    ) -> None:
        self.settings = settings
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._successes = 0
        self._probe_in_flight = False
        self.opened_at: float | None = None

    def state(self, now: float) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self.opened_at is not None
            and now - self.opened_at >= self.settings.open_seconds
        ):
            self._move(BreakerState.HALF_OPEN)
            self._successes = 0
            self._probe_in_flight = False
        return self._state

    def admits(self, now: float) -> bool:
        """Whether a call may be sent now (without claiming the half-open probe)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        return state is BreakerState.HALF_OPEN and not self._probe_in_flight

    def on_dispatch(self, now: float) -> None:
        """A call is being sent: in half-open it is the probe."""
        if self.state(now) is BreakerState.HALF_OPEN:
            self._probe_in_flight = True

    def record_success(self, now: float) -> None:
        state = self.state(now)
        if state is BreakerState.CLOSED:
            self._failures = 0
        elif state is BreakerState.HALF_OPEN:
            self._probe_in_flight = False
            self._successes += 1
            if self._successes >= self.settings.success_threshold:
                self._failures = 0
                self.opened_at = None
                self._move(BreakerState.CLOSED)
        # A late success while open (a call sent before the breaker opened) says
        # nothing about the worker now; it is ignored.

    def record_failure(self, now: float) -> None:
        state = self.state(now)
        if state is BreakerState.CLOSED:
            self._failures += 1
            if self._failures >= self.settings.failure_threshold:
                self._open(now)
        elif state is BreakerState.HALF_OPEN:
            self._open(now)

    def worker_restarted(self) -> None:
        """The worker is a new process, so what was counted was the old one's
        doing (typically the calls cut off by its crash). An open breaker lets
        probes through now instead of keeping a healthy process out for
        ``open_seconds``; a closed one forgets its failures."""
        if self._state is BreakerState.OPEN:
            self.opened_at = None
            self._successes = 0
            self._probe_in_flight = False
            self._move(BreakerState.HALF_OPEN)
        elif self._state is BreakerState.CLOSED:
            self._failures = 0

    def _open(self, now: float) -> None:
        self.opened_at = now
        self._probe_in_flight = False
        self._successes = 0
        self._move(BreakerState.OPEN)

    def _move(self, to: BreakerState) -> None:
        before, self._state = self._state, to
        if before is not to and self._on_transition is not None:
            self._on_transition(before, to)

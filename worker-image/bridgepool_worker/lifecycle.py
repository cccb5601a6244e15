"""The worker's lifecycle as a pure state machine, time passed in.

initializing -> ready <-> busy (in flight == capacity) -> degraded (marked
unhealthy, or repeated internal errors) -> terminating (SIGTERM: no new
sessions, in-flight calls finish) -> terminated.

Every method that can change the state returns the :class:`Transition` it
caused (or None), so the shell logs each one with the time spent in the
previous state and the reason. Recycling limits are computed here too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bridgepool.protocol import RecycleStatus, WorkerState

# Consecutive internal (500) errors that make a worker degraded, and how long
# it stays degraded after the last one unless a call succeeds first.
DEGRADE_AFTER_INTERNAL_ERRORS = 3
INTERNAL_ERROR_HOLD_SECONDS = 10.0


@dataclass(frozen=True)
class Transition:
    previous: WorkerState
    state: WorkerState
    reason: str
    seconds_in_previous: float


@dataclass(frozen=True)
class RecycleLimits:
    max_requests: int | None = None
    max_age_seconds: float | None = None
    max_rss_bytes: int | None = None


def recycle_status(
    limits: RecycleLimits, requests: int, age_seconds: float, rss_bytes: int
) -> RecycleStatus:
    """Whether a recycling limit is reached (the first one, in this order)."""
    if limits.max_requests is not None and requests >= limits.max_requests:
        return RecycleStatus(due=True, reason=f"max_requests: {requests} >= {limits.max_requests}")
    if limits.max_age_seconds is not None and age_seconds >= limits.max_age_seconds:
        return RecycleStatus(
            due=True, reason=f"max_age: {age_seconds:.0f}s >= {limits.max_age_seconds:g}s"
        )
    if limits.max_rss_bytes is not None and rss_bytes >= limits.max_rss_bytes:
        return RecycleStatus(due=True, reason=f"max_rss: {rss_bytes} >= {limits.max_rss_bytes}")
    return RecycleStatus()


# Time constant of the in-flight average the autoscaler reads.
LOAD_AVERAGE_SECONDS = 10.0


class LoadAverage:
    """The in-flight count averaged over time: an exponentially weighted mean of
    the count as a step function of time, with time constant ``seconds``.

    A sample of the count at one instant swings between 0 and capacity as
    calls start and end; the autoscaler needs the load, not the instant. Exact
    and O(1): each update weighs the level held since the last one by how long
    it was held."""

    def __init__(self, now: float, seconds: float = LOAD_AVERAGE_SECONDS) -> None:
        self.seconds = seconds
        self.value = 0.0
        self.at = now

    def update(self, level: int, now: float) -> float:
        """``level`` was held from the last update until ``now``; the average now."""
        held = max(0.0, now - self.at)
        weight = math.exp(-held / self.seconds)
        self.value = self.value * weight + level * (1.0 - weight)
        self.at = max(self.at, now)
        return self.value


class Lifecycle:
    """State, in-flight accounting and readiness of one worker."""

    def __init__(self, capacity: int, now: float) -> None:
        self.capacity = capacity
        self.in_flight = 0
        self.load = LoadAverage(now)
        self.state = WorkerState.INITIALIZING
        self.reason = "starting"
        self.since = now
        self.initialized = False
        self.terminating = False
        self.terminated = False
        self._unhealthy_until: float | None = None  # inf: until cleared
        self._unhealthy_reason = ""
        self._internal_errors = 0
        self._last_internal_error = 0.0

    # -- what the state should be ------------------------------------------------

    def _unhealthy(self, now: float) -> str | None:
        if self._unhealthy_until is not None and now < self._unhealthy_until:
            return self._unhealthy_reason
        if (
            self._internal_errors >= DEGRADE_AFTER_INTERNAL_ERRORS
            and now - self._last_internal_error < INTERNAL_ERROR_HOLD_SECONDS
        ):
            return f"{self._internal_errors} consecutive internal errors"
        return None

    def _desired(self, now: float) -> tuple[WorkerState, str | None]:
        if self.terminated:
            return WorkerState.TERMINATED, None
        if self.terminating:
            return WorkerState.TERMINATING, None
        if not self.initialized:
            return WorkerState.INITIALIZING, None
        unhealthy = self._unhealthy(now)
        if unhealthy is not None:
            return WorkerState.DEGRADED, unhealthy
        if self.in_flight >= self.capacity:
            return WorkerState.BUSY, "all call slots in use"
        return WorkerState.READY, None

    def _settle(self, now: float, reason: str) -> Transition | None:
        state, why = self._desired(now)
        if state == self.state:
            return None
        transition = Transition(self.state, state, why or reason, max(0.0, now - self.since))
        self.state, self.reason, self.since = state, transition.reason, now
        return transition

    # -- events ------------------------------------------------------------------

    def tick(self, now: float) -> Transition | None:
        """Re-check timed conditions (an unhealthy period or error hold ending)."""
        return self._settle(now, "recovered")

    def mark_initialized(self, now: float) -> Transition | None:
        self.initialized = True
        return self._settle(now, "initialization complete")

    def try_begin_call(self, now: float) -> tuple[bool, Transition | None]:
        """Take a call slot if one is free (calls that may wait line up in slots.py)."""
        if self.in_flight >= self.capacity:
            return False, None
        self.load.update(self.in_flight, now)
        self.in_flight += 1
        return True, self._settle(now, "call started")

    def end_call(
        self, now: float, *, internal_error: bool = False, handed_over: bool = False
    ) -> Transition | None:
        """A call ended: its outcome counts towards degrading, and its slot is
        freed (see ``free_slot``)."""
        if internal_error:
            self._internal_errors += 1
            self._last_internal_error = now
        else:
            self._internal_errors = 0
        return self.free_slot(now, handed_over=handed_over)

    def free_slot(self, now: float, *, handed_over: bool = False) -> Transition | None:
        """A slot is free again: its call ended, or it was taken for a call that
        did not run after all. ``handed_over``: the slot went straight to a call
        that waited for one, so the count of calls in flight stays as it is."""
        self.load.update(self.in_flight, now)
        if not handed_over:
            self.in_flight = max(0, self.in_flight - 1)
        return self._settle(now, "call finished")

    def mark_unhealthy(self, now: float, seconds: float | None, reason: str) -> Transition | None:
        self._unhealthy_until = now + seconds if seconds is not None else float("inf")
        self._unhealthy_reason = reason
        return self._settle(now, reason)

    def clear_unhealthy(self, now: float) -> Transition | None:
        self._unhealthy_until = None
        self._internal_errors = 0
        return self._settle(now, "unhealthy mark cleared")

    def begin_termination(self, now: float, reason: str) -> Transition | None:
        self.terminating = True
        return self._settle(now, reason)

    def mark_terminated(self, now: float, reason: str) -> Transition | None:
        self.terminated = True
        return self._settle(now, reason)

    # -- what others see -----------------------------------------------------------

    @property
    def accepting_sessions(self) -> bool:
        return not (self.terminating or self.terminated)

    def readiness(self, now: float) -> tuple[bool, str | None]:
        """Ready for traffic, and why not when not. A busy worker is still ready:
        its capacity tells the router how much to send."""
        state, why = self._desired(now)
        if state in (WorkerState.READY, WorkerState.BUSY):
            return True, None
        if state == WorkerState.INITIALIZING:
            return False, "initializing"
        if state == WorkerState.DEGRADED:
            return False, f"degraded: {why}"
        return False, state.value

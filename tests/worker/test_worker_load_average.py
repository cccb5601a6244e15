"""The in-flight average the autoscaler reads: the load over time, not the
count at the instant the operator asks."""

from __future__ import annotations

import math

import pytest

from bridgepool_worker.lifecycle import Lifecycle, LoadAverage


def test_a_level_held_long_is_the_average() -> None:
    load = LoadAverage(now=0.0, seconds=10.0)
    load.update(0, 0.0)
    assert load.update(3, 1000.0) == pytest.approx(3.0)


def test_a_step_reaches_one_minus_one_over_e_after_one_time_constant() -> None:
    load = LoadAverage(now=0.0, seconds=10.0)
    assert load.update(2, 10.0) == pytest.approx(2 * (1 - math.exp(-1)))


def test_calls_that_come_and_go_average_to_their_duty_cycle() -> None:
    """Two slots busy half the time, one instant at a time: an instant's sample
    says 0 or 2, the average says 1."""
    lifecycle = Lifecycle(capacity=2, now=0.0)
    lifecycle.mark_initialized(0.0)
    t = 0.0
    for _ in range(2000):  # 0.1 s with two calls, 0.1 s with none, for 400 s
        for _ in range(2):
            assert lifecycle.try_begin_call(t)[0]
        t += 0.1
        lifecycle.end_call(t)
        lifecycle.end_call(t)
        t += 0.1
    assert lifecycle.in_flight == 0
    assert lifecycle.load.update(lifecycle.in_flight, t) == pytest.approx(1.0, abs=0.02)

"""The scaling decision: band, bounds and stabilization windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridgepool.spec import BridgePoolSpec, ScaleRecommendation
from bridgepool_planner.scaling import Load, ScalingDecision, decide

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
TEMPLATE = {"spec": {"containers": [{"name": "w", "image": "i"}]}}


def spec(up: float = 0, down: float = 0, **fields: Any) -> BridgePoolSpec:
    return BridgePoolSpec.model_validate(
        {
            "template": TEMPLATE,
            "minReplicas": 2,
            "maxReplicas": 10,
            "autoscaling": {
                "enabled": True,
                "scaleUpStabilizationSeconds": up,
                "scaleDownStabilizationSeconds": down,
            },
            **fields,
        }
    )


def load(in_flight: int, workers: int, capacity: int = 4) -> Load:
    return Load(in_flight=in_flight, capacity=capacity * workers, workers=workers)


@pytest.mark.parametrize(
    ("current", "in_flight", "workers", "desired", "limited"),
    [
        (4, 11, 4, 4, None),  # 68.75 % in the 60-80 band: hold
        (4, 12, 4, 4, None),  # 75 %: hold
        (4, 16, 4, 6, None),  # 100 %: 16 / (4 * 0.7) = 5.7 -> 6
        (4, 14, 4, 5, None),  # 87.5 %: 14 / 2.8 = 5
        (4, 4, 4, 2, None),  # 25 %: 4 / 2.8 -> 2
        (4, 0, 4, 2, "AtMinReplicas"),  # idle: 0 -> min 2
        (8, 32, 8, 10, "AtMaxReplicas"),  # 32 / 2.8 = 12 -> max 10
        (3, 3, 0, 3, None),  # no ready worker reporting: hold
    ],
)
def test_band_and_bounds(
    current: int, in_flight: int, workers: int, desired: int, limited: str | None
) -> None:
    d = decide(spec(), current, [], load(in_flight, workers), T0)
    assert (d.desired, d.limited) == (desired, limited)


def test_disabled_uses_fixed_size() -> None:
    fixed = BridgePoolSpec.model_validate({"template": TEMPLATE, "minReplicas": 1, "replicas": 3})
    assert decide(fixed, 7, [], load(100, 3), T0).desired == 3


def drive(
    s: BridgePoolSpec, current: int, loads: list[tuple[float, Load]]
) -> list[ScalingDecision]:
    """Feed a sequence of (seconds after T0, load), carrying memory and size like status does."""
    history: tuple[ScaleRecommendation, ...] = ()
    out = []
    for at, ld in loads:
        d = decide(s, current, history, ld, T0 + timedelta(seconds=at))
        history, current = d.recommendations, d.desired
        out.append(d)
    return out


def test_scale_up_waits_for_the_up_window() -> None:
    s = spec(up=30, down=300)
    quiet, busy = load(11, 4), load(16, 4)
    steps = drive(s, 4, [(0, quiet), (5, busy), (20, busy), (29, busy), (31, busy)])
    # The quiet recommendation (4) at t=0 holds the size until it leaves the 30 s window.
    assert [d.desired for d in steps] == [4, 4, 4, 4, 6]


def test_short_spike_does_not_scale_up() -> None:
    s = spec(up=30, down=300)
    quiet, busy = load(11, 4), load(16, 4)
    steps = drive(s, 4, [(0, quiet), (5, busy), (10, quiet), (25, busy), (50, quiet)])
    assert {d.desired for d in steps} == {4}


def test_scale_down_waits_for_the_down_window_and_does_not_flap() -> None:
    s = spec(up=0, down=300)
    busy, idle = load(12, 4), load(2, 4)
    steps = drive(s, 4, [(0, busy), (60, idle), (120, busy), (200, idle), (301, idle), (421, idle)])
    # busy at 120 s keeps size 4 until 420 s; then down to max(idle recs) = 2.
    assert [d.desired for d in steps] == [4, 4, 4, 4, 4, 2]


def test_memory_is_bounded_and_compressed() -> None:
    s = spec(up=30, down=300)
    steps = drive(s, 4, [(i * 5, load(11, 4)) for i in range(200)])
    memory = steps[-1].recommendations
    assert len(memory) == 1  # a run of equal recommendations is one entry
    assert memory[0].time == "2024-05-01T12:16:35.000Z"
    changing = drive(s, 4, [(i * 5, load(16 if i % 2 else 0, 4)) for i in range(200)])
    assert len(changing[-1].recommendations) <= 61  # only the 300 s window is kept


def rec(seconds_ago: float, replicas: int, now: datetime) -> ScaleRecommendation:
    """A remembered recommendation, as a pass ``seconds_ago`` wrote it."""
    at = now - timedelta(seconds=seconds_ago)
    return ScaleRecommendation(time=at.isoformat().replace("+00:00", "Z"), replicas=replicas)


# Passes run at any time, not on whole seconds.
NOW = T0 + timedelta(seconds=0.25)
QUIET, BUSY, IDLE = load(11, 4), load(16, 4), load(2, 4)  # recommend 4, 6, 2


@pytest.mark.parametrize(
    ("up", "down", "history", "ld", "desired"),
    [
        # A window of 0 s holds only this pass's recommendation: act on it at once.
        pytest.param(0, 300, [], BUSY, 6, id="up 0: grows at once"),
        pytest.param(0, 300, [(5, 4)], BUSY, 6, id="up 0: older quiet ones do not count"),
        pytest.param(300, 0, [], IDLE, 2, id="down 0: shrinks at once"),
        pytest.param(300, 0, [(5, 4)], IDLE, 2, id="down 0: older busy ones do not count"),
        pytest.param(0, 0, [(1, 4)], QUIET, 4, id="both 0: holds inside the band"),
        # Sub-second windows count what is inside them, to the millisecond.
        pytest.param(0.5, 300, [(0.4, 4)], BUSY, 4, id="up 0.5: a quiet one 0.4 s ago holds"),
        pytest.param(0.5, 300, [(0.6, 4)], BUSY, 6, id="up 0.5: one 0.6 s ago is out"),
        pytest.param(300, 0.5, [(0.4, 4)], IDLE, 4, id="down 0.5: a quiet one 0.4 s ago holds"),
        pytest.param(300, 0.5, [(0.6, 4)], IDLE, 2, id="down 0.5: one 0.6 s ago is out"),
        # Normal windows, with entries just inside and just outside.
        pytest.param(30, 300, [(29.9, 4)], BUSY, 4, id="up 30: quiet 29.9 s ago holds"),
        pytest.param(30, 300, [(30.1, 4)], BUSY, 6, id="up 30: quiet 30.1 s ago is out"),
        pytest.param(30, 300, [(299, 4)], IDLE, 4, id="down 300: quiet 299 s ago holds"),
        pytest.param(30, 300, [(301, 4)], IDLE, 2, id="down 300: quiet 301 s ago is out"),
    ],
)
def test_stabilization_windows_always_count_the_current_recommendation(
    up: float, down: float, history: list[tuple[float, int]], ld: Load, desired: int
) -> None:
    memory = [rec(ago, replicas, NOW) for ago, replicas in history]
    decision = decide(spec(up=up, down=down), 4, memory, ld, NOW)
    assert decision.desired == desired
    # The pass's own recommendation is remembered, at its exact time.
    assert decision.recommendations[-1].time == "2024-05-01T12:00:00.250Z"


def test_a_zero_window_scales_pass_after_pass_at_any_time() -> None:
    """Passes at fractional seconds with both windows 0 (the HPA's 'no
    stabilization'): each pass follows its own recommendation."""
    s = spec(up=0, down=0)
    loads = [(0.3, BUSY), (2.7, BUSY), (5.1, IDLE), (7.9, QUIET)]
    steps = drive(s, 4, loads)
    assert [d.desired for d in steps] == [6, 6, 2, 2]


def test_a_sub_second_window_keeps_what_the_last_pass_said() -> None:
    """Passes 0.45 s apart with a 0.5 s scale-up window: the quiet pass before
    is inside the window and holds the size; one more pass later, it is out."""
    s = spec(up=0.5, down=300)
    steps = drive(s, 4, [(0.1, QUIET), (0.55, BUSY), (1.2, BUSY)])
    assert [d.desired for d in steps] == [4, 4, 6]

"""The scaling decision: how many workers the pool should have.

Utilization is in-flight calls / capacity across ready, non-draining workers,
with each worker's in-flight count averaged over time by the worker (an
instant's count swings between 0 and capacity as calls start and end).
Above the band's high mark the pool grows, below its low mark it shrinks,
each time to the size that brings utilization back to the band's middle,
bounded by minReplicas..maxReplicas.

Stabilization (as the Kubernetes HPA does it): every pass records its raw
recommendation. The pool grows only to the *smallest* recommendation of the
scale-up window and shrinks only to the *largest* of the scale-down window,
so a short spike or lull does not make it flap. The recommendations live in
the pool's status, so a restarted operator keeps its memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from bridgepool.protocol import WorkerStats
from bridgepool.spec import MAX_RECOMMENDATIONS, BridgePoolSpec, ScaleRecommendation

from .workers import ObservedWorker, parse_time

Limit = Literal["AtMinReplicas", "AtMaxReplicas"]


@dataclass(frozen=True)
class Load:
    """Summed load of the ready, non-draining workers that reported stats."""

    in_flight: float  # averaged over time where the worker reports it
    capacity: int
    workers: int

    @property
    def utilization(self) -> float | None:
        return None if self.capacity <= 0 else self.in_flight / self.capacity


@dataclass(frozen=True)
class ScalingDecision:
    desired: int
    recommendation: int | None  # this pass's raw (unclamped) recommendation
    limited: Limit | None  # the recommendation was cut by a bound
    recommendations: tuple[ScaleRecommendation, ...]  # memory to store in status


def measure_load(workers: Sequence[ObservedWorker]) -> Load:
    reporting = [w for w in workers if w.ready and not w.draining and w.stats is not None]
    return Load(
        in_flight=sum(_load(w.stats) for w in reporting if w.stats),
        capacity=sum(w.stats.capacity for w in reporting if w.stats),
        workers=len(reporting),
    )


def _load(stats: WorkerStats) -> float:
    return stats.in_flight if stats.in_flight_average is None else stats.in_flight_average


def raw_recommendation(spec: BridgePoolSpec, current: int, load: Load) -> int | None:
    """The size that brings utilization to the band's middle; ``current`` inside the band."""
    utilization = load.utilization
    if utilization is None or load.workers == 0:
        return None
    band = spec.autoscaling
    percent = utilization * 100.0
    if band.target_utilization_low <= percent <= band.target_utilization_high:
        return current
    per_worker = load.capacity / load.workers
    return math.ceil(load.in_flight / (per_worker * band.target_middle) - 1e-9)


def _precise_time(value: datetime) -> str:
    """RFC 3339 to the millisecond: a window shorter than a second, or one that
    ends between two whole seconds, must not lose or gain an entry to rounding."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _remember(
    history: Sequence[ScaleRecommendation], raw: int, now: datetime, keep: float
) -> tuple[ScaleRecommendation, ...]:
    kept = [r for r in history if _inside(r, now, keep)]
    # A run of equal recommendations needs only its latest time: the run is
    # inside any window that ends now exactly when its latest entry is.
    latest = ScaleRecommendation(time=_precise_time(now), replicas=raw)
    if kept and kept[-1].replicas == raw:
        kept[-1] = latest
    else:
        kept.append(latest)
    return tuple(kept[-MAX_RECOMMENDATIONS:])


def _inside(r: ScaleRecommendation, now: datetime, seconds: float) -> bool:
    return (parse_time(r.time) or now) >= now - timedelta(seconds=seconds)


def _window(
    history: Sequence[ScaleRecommendation], raw: int, now: datetime, seconds: float
) -> list[int]:
    """The recommendations of the window that ends now: this pass's own always
    counts, so a window of 0 s holds exactly that one."""
    return [raw, *(r.replicas for r in history if _inside(r, now, seconds))]


def decide(
    spec: BridgePoolSpec,
    current: int,
    history: Sequence[ScaleRecommendation],
    load: Load,
    now: datetime,
) -> ScalingDecision:
    """The pool's desired size this pass. ``current`` is the size last decided."""
    lo, hi = spec.min_replicas, spec.max_replicas
    if not spec.autoscaling.enabled:
        return ScalingDecision(spec.fixed_replicas, None, None, ())
    band = spec.autoscaling
    raw = raw_recommendation(spec, current, load)
    if raw is None:  # nothing to measure (no ready workers): hold the size
        return ScalingDecision(min(max(current, lo), hi), None, None, tuple(history))
    keep = max(band.scale_up_stabilization_seconds, band.scale_down_stabilization_seconds)
    up_to = min(_window(history, raw, now, band.scale_up_stabilization_seconds))
    down_to = max(_window(history, raw, now, band.scale_down_stabilization_seconds))
    memory = _remember(history, raw, now, keep)
    desired = current
    if desired < up_to:
        desired = up_to
    if desired > down_to:
        desired = down_to
    limited: Limit | None = None
    if desired >= hi and raw > hi:
        limited = "AtMaxReplicas"
    elif desired <= lo and raw < lo:
        limited = "AtMinReplicas"
    return ScalingDecision(min(max(desired, lo), hi), raw, limited, memory)

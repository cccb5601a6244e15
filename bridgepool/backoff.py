"""Exponential backoff, written once for every component: how long to wait
before trying again after failures in a row. The router's retries and its
Kubernetes watch, the operator's failed passes and refused pod templates,
and a worker asking a move's target to activate all wait by it.

Pure: the caller brings the random draw (``jitter``), so tests pass their own.
"""

from __future__ import annotations

# 2.0 ** 1024 overflows a float (OverflowError); a wait that many doublings
# along is at its cap long before, so the exponent stops here.
_MAX_DOUBLINGS = 1023


def backoff_seconds(
    retry: int, *, base: float, cap: float, jitter: float = 1.0, floor: float = 0.0
) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): ``base`` before
    the first, doubling with each one after, at most ``cap``; that times
    ``jitter``, plus ``floor``.

    ``jitter`` is a uniform draw in [0, 1) where many callers fail together
    (every router's retries, every router's watch of one API server): "full
    jitter" spreads their retries over the whole wait instead of sending them
    in lockstep. A caller that retries alone keeps the default, 1.0: the wait
    itself. ``floor`` keeps a jittered wait from coming out as no wait at all.
    """
    grown = base * 2.0 ** min(retry - 1, _MAX_DOUBLINGS)
    return min(grown, cap) * jitter + floor

"""Which worker gets a call.

Eligible workers are up (active health), not draining, admitted by their
breaker and, for a new session, accepting sessions. A call without a session
goes to the least loaded of them (in-flight / capacity, then fewest
sessions; ties rotate); a new session goes to its home among them (see
:func:`home`), so that every router places it on the same worker.

Two guards keep the breaker from emptying the pool:

* ejection cap: at most ``max_ejection_percent`` of the pool's workers are kept
  out by open breakers at once (the earliest opened); the rest stay in rotation
  as if their breakers were closed;
* panic mode: if no worker is eligible, every non-draining worker is a
  candidate, whatever its health or breaker says: sending calls to workers that
  may be failing beats failing every call for certain.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bridgepool.placement import home_score


@dataclass(frozen=True)
class WorkerView:
    """What the balancer needs to know about one worker at one moment."""

    worker: str
    up: bool = True
    draining: bool = False
    breaker_admits: bool = True
    breaker_opened_at: float | None = None  # set while open or half-open
    accepting_sessions: bool = True
    in_flight: int = 0
    capacity: int = 1
    sessions: int = 0

    @property
    def has_room(self) -> bool:
        return self.in_flight < self.capacity


@dataclass(frozen=True)
class Candidates:
    workers: tuple[WorkerView, ...]
    panic: bool


def ejected(workers: Sequence[WorkerView], max_ejection_percent: int) -> frozenset[str]:
    """The workers kept out by their breakers, capped at the ejection percentage."""
    cap = len(workers) * max_ejection_percent // 100
    blocked = [w for w in workers if not w.breaker_admits]
    blocked.sort(key=lambda w: (w.breaker_opened_at or 0.0, w.worker))
    return frozenset(w.worker for w in blocked[:cap])


def candidates(
    workers: Sequence[WorkerView],
    *,
    new_session: bool,
    max_ejection_percent: int,
    exclude: Iterable[str] = (),
) -> Candidates:
    """The workers a call may go to (with or without room), and whether in panic."""
    excluded = frozenset(exclude)
    out = ejected(workers, max_ejection_percent)
    eligible = tuple(
        w
        for w in workers
        if w.worker not in excluded
        and w.worker not in out
        and w.up
        and not w.draining
        and (w.accepting_sessions or not new_session)
    )
    if eligible:
        return Candidates(eligible, panic=False)
    fallback = tuple(w for w in workers if w.worker not in excluded and not w.draining)
    return Candidates(fallback, panic=bool(fallback))


def home(session_id: str, workers: Sequence[WorkerView]) -> WorkerView | None:
    """The worker a new session goes to: its home among ``workers``
    (:mod:`bridgepool.placement`), so routers that place one session at the
    same time (its first calls sent through different routers) agree, and the
    operator moving sessions off a draining worker picks the same worker."""
    return max(workers, key=lambda w: home_score(session_id, w.worker), default=None)


# Slots a router's share of a worker grows by per share's worth of calls.
SHARE_GROWTH = 0.25


def share_after_busy(share: float) -> float:
    """A worker turned a call away as busy (its slots are taken by other
    routers' calls too): this router halves its share of the worker's slots."""
    return max(1.0, share / 2.0)


def share_after_success(share: float, capacity: int) -> float:
    """A call went through: the share grows back by about one slot per four
    shares' worth of calls, up to the worker's capacity (additive increase,
    multiplicative decrease, as TCP shares a link; slowly, since a share of a
    few slots would otherwise be back over the top after a call or two)."""
    return min(float(capacity), share + SHARE_GROWTH / share)


def least_loaded(workers: Sequence[WorkerView], rotation: int = 0) -> WorkerView | None:
    """The least-loaded worker with room, or None if every one is at capacity."""
    with_room = [w for w in workers if w.has_room]
    if not with_room:
        return None

    def load(w: WorkerView) -> tuple[float, int]:
        return (w.in_flight / max(w.capacity, 1), w.sessions)

    best = min(load(w) for w in with_room)
    ties = [w for w in with_room if load(w) == best]
    return ties[rotation % len(ties)]

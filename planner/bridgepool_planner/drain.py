"""The drain: how a worker leaves the pool without cutting its sessions short.

A worker is drained by a mark its executor keeps where the routers see it
(on a cluster, two annotations on its pod; on one machine, the router's pool
file), saying since when and why. From then on routers send it no new
sessions and the planner counts it out of the pool. It is stopped
once it holds no sessions and no calls, once it stopped serving, or once
``spec.rollout.drainTimeoutSeconds`` passed (its remaining sessions are lost
then). Which worker goes first is the victim order of :func:`drain_order`.

Pure: the planner decides, the executor marks the worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal

from bridgepool.placement import Target
from bridgepool.spec import BridgePoolSpec

from .health import plural
from .workers import ObservedWorker, format_time

# Why a worker is drained, as its drain mark and metrics say.
DrainReason = Literal["scale-down", "rollout", "unhealthy", "recycle"]
# Why a draining worker is stopped.
StopReason = Literal["drained", "stopped-serving", "drain-timeout"]


# Draining workers named one by one in a status message; the rest are counted.
MAX_NAMED = 3


def drain_order(workers: Sequence[ObservedWorker], revision: str) -> list[ObservedWorker]:
    """Workers in victim order: not ready first, then fewest sessions, then old
    revision, then youngest. The first is drained first."""

    def key(w: ObservedWorker) -> tuple[bool, float, bool, float]:
        # A ready worker that did not report stats may hold sessions: last among equals.
        sessions = w.sessions if w.sessions is not None else (0 if not w.ready else math.inf)
        return (w.ready, float(sessions), w.revision == revision, -w.created_at.timestamp())

    return sorted(workers, key=key)


def move_targets(workers: Sequence[ObservedWorker], revision: str) -> tuple[Target, ...]:
    """Where a draining worker's sessions may go: as for new sessions, ready
    workers that are not draining and accept sessions, of the current
    revision when there are any (a rollout moves sessions forward, not onto
    workers about to leave too)."""
    open_ = [
        w
        for w in workers
        if w.ready
        and not w.draining
        and not w.stopping
        and w.url
        and w.stats is not None
        and w.stats.accepting_sessions
    ]
    current = [w for w in open_ if w.revision == revision] or open_
    return tuple(Target(w.name, w.url) for w in current if w.url)


def drain_deadline(w: ObservedWorker, spec: BridgePoolSpec) -> datetime:
    """When a draining worker is deleted whatever it still holds."""
    assert w.draining_since is not None
    return w.draining_since + timedelta(seconds=spec.rollout.drain_timeout_seconds)


def drain_done(
    w: ObservedWorker, spec: BridgePoolSpec, now: datetime
) -> tuple[StopReason, str] | None:
    """Why a draining worker may be deleted now, or None."""
    if w.stats is not None and w.stats.sessions == 0 and w.stats.in_flight == 0:
        return "drained", "drained: no sessions left"
    if w.stats is None and not w.ready:
        return "stopped-serving", "drained: worker not serving"
    if now >= drain_deadline(w, spec):
        return "drain-timeout", f"drain timeout ({spec.rollout.drain_timeout_seconds} s) passed"
    return None


def not_moved(reasons: Mapping[str, int]) -> str:
    """``2 cannot move: session_too_large``, from the worker's count of its
    sessions that cannot move, by why."""
    return f"{sum(reasons.values())} cannot move: {', '.join(sorted(reasons))}"


def unmovable(w: ObservedWorker) -> Mapping[str, int]:
    """The worker's sessions that cannot move, counted by why, as it reports them."""
    return {} if w.stats is None else {r: n for r, n in w.stats.unmovable_sessions.items() if n}


def waiting_on(w: ObservedWorker, spec: BridgePoolSpec) -> str:
    """What a draining worker waits for, for a human: ``web-x7 (rollout): 2
    sessions (1 cannot move: move_refused), 1 call; gives up at
    2026-01-01T10:05:00Z``."""
    if w.stats is None:
        holds = "sessions unknown (no stats)"
    else:
        holds = plural(w.stats.sessions, "session")
        if stuck := unmovable(w):
            holds += f" ({not_moved(stuck)})"
        if w.stats.in_flight:
            holds += ", " + plural(w.stats.in_flight, "call")
    why = f" ({w.drain_reason})" if w.drain_reason else ""
    return f"{w.name}{why}: {holds}; gives up at {format_time(drain_deadline(w, spec))}"


def draining_message(draining: Sequence[ObservedWorker], spec: BridgePoolSpec) -> str:
    """The draining workers and what each waits for, the longest wait first."""
    ordered = sorted(draining, key=lambda w: (w.draining_since or w.created_at, w.name))
    parts = [waiting_on(w, spec) for w in ordered[:MAX_NAMED]]
    if len(ordered) > MAX_NAMED:
        parts.append(f"and {plural(len(ordered) - MAX_NAMED, 'more worker')}")
    return f"waiting for {plural(len(draining), 'draining worker')}: " + "; ".join(parts)

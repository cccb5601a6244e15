"""The drain: how a worker leaves the pool without cutting its sessions short.

A worker is drained by two annotations on its pod (``labels.ANNOTATION_DRAINING``
holds when, ``labels.ANNOTATION_DRAIN_REASON`` why). From then on routers send
it no new sessions and the planner counts it out of the pool. It is deleted
once it holds no sessions and no calls, once it stopped serving, or once
``spec.rollout.drainTimeoutSeconds`` passed (its remaining sessions are lost
then). Which worker goes first is the victim order of :func:`drain_order`.

Pure: the planner decides, ``actions.py`` writes the annotations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bridgepool import labels
from bridgepool.spec import BridgePoolSpec

from .health import plural
from .observe import ObservedWorker, format_time

# Why a worker is drained, as its drain-reason annotation and metrics say.
DrainReason = Literal["scale-down", "rollout", "unhealthy", "recycle"]
# Why a draining worker is deleted.
DeleteReason = Literal["drained", "stopped-serving", "drain-timeout"]


@dataclass(frozen=True)
class Target:
    """A worker a draining worker's sessions may move to."""

    name: str
    url: str


# Draining workers named one by one in a status message; the rest are counted.
MAX_NAMED = 3


def drain_annotations(since: datetime, reason: DrainReason) -> dict[str, str]:
    """The pod annotations that mark a worker draining."""
    return {
        labels.ANNOTATION_DRAINING: format_time(since),
        labels.ANNOTATION_DRAIN_REASON: reason,
    }


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
        and not w.deleting
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
) -> tuple[DeleteReason, str] | None:
    """Why a draining worker may be deleted now, or None."""
    if w.stats is not None and w.stats.sessions == 0 and w.stats.in_flight == 0:
        return "drained", "drained: no sessions left"
    if w.stats is None and not w.ready:
        return "stopped-serving", "drained: worker not serving"
    if now >= drain_deadline(w, spec):
        return "drain-timeout", f"drain timeout ({spec.rollout.drain_timeout_seconds} s) passed"
    return None


# Pod name -> session -> why it cannot move (what the operator learned trying).
Unmovable = Mapping[str, Mapping[str, str]]


def not_moved(reasons: Mapping[str, str]) -> str:
    """``2 cannot move: session_too_large``."""
    return f"{len(reasons)} cannot move: {', '.join(sorted(set(reasons.values())))}"


def waiting_on(
    w: ObservedWorker, spec: BridgePoolSpec, unmovable: Mapping[str, str] | None = None
) -> str:
    """What a draining worker waits for, for a human: ``web-x7 (rollout): 2
    sessions (1 cannot move: move_refused), 1 call; gives up at
    2026-01-01T10:05:00Z``."""
    if w.stats is None:
        holds = "sessions unknown (no stats)"
    else:
        holds = plural(w.stats.sessions, "session")
        if unmovable:
            holds += f" ({not_moved(unmovable)})"
        if w.stats.in_flight:
            holds += ", " + plural(w.stats.in_flight, "call")
    why = f" ({w.drain_reason})" if w.drain_reason else ""
    return f"{w.name}{why}: {holds}; gives up at {format_time(drain_deadline(w, spec))}"


def draining_message(
    draining: Sequence[ObservedWorker], spec: BridgePoolSpec, unmovable: Unmovable
) -> str:
    """The draining workers and what each waits for, the longest wait first."""
    ordered = sorted(draining, key=lambda w: (w.draining_since or w.created_at, w.name))
    parts = [waiting_on(w, spec, unmovable.get(w.name)) for w in ordered[:MAX_NAMED]]
    if len(ordered) > MAX_NAMED:
        parts.append(f"and {plural(len(ordered) - MAX_NAMED, 'more worker')}")
    return f"waiting for {plural(len(draining), 'draining worker')}: " + "; ".join(parts)

"""How the planner judges one worker from what its executor observed and its
stats: starting, serving, gone unready, dead (replace now) or outdated
(replace gracefully).

Pure, like the planner and the status that use these judgments.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bridgepool.protocol import WorkerState
from bridgepool.spec import BridgePoolSpec

from .workers import ObservedWorker, format_time

# Why a serving worker is replaced gracefully (a new one first).
OutdatedKind = Literal["rollout", "recycle", "restarts"]


@dataclass(frozen=True)
class Outdated:
    kind: OutdatedKind
    message: str


def plural(n: int, noun: str) -> str:
    """``1 worker``, ``2 workers``: counts in messages read as English."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def death_reason(w: ObservedWorker, spec: BridgePoolSpec, now: datetime) -> str | None:
    """Why a worker must be replaced right away, or None."""
    if w.phase == "exited":
        return w.exit_detail or "exited"
    if w.ready:
        return None
    if w.crash_looping:
        return f"{w.waiting_reason or 'crash loop'} after {plural(w.restart_count, 'restart')}"
    if w.restart_count >= spec.health.max_restarts:
        return plural(w.restart_count, "restart")
    if w.phase != "running" or w.config_problem:
        return None
    waited = w.not_ready_for(now)
    if w.never_ready:
        # Starting is slow on a busy node; replacing a starting worker adds load.
        limit = spec.health.startup_timeout_seconds
        why = f"not ready {int(waited)} s after its start"
    else:
        limit = spec.health.interval_seconds * spec.health.replace_after_failures
        why = f"not ready for {int(waited)} s"
    if waited < limit or says_it_serves(w):
        return None
    return why


def says_it_serves(w: ObservedWorker) -> bool:
    """The worker answered its executor's stats call and reports itself ready
    or busy. When the executor's readiness checks (the kubelet's, the local
    supervisor's) fail all the same, they are not getting through in time (a
    machine short of CPU); a new worker there would fare no better, and
    starting one adds to the load."""
    return w.stats is not None and w.stats.state in (WorkerState.READY, WorkerState.BUSY)


def is_starting(w: ObservedWorker, spec: BridgePoolSpec, now: datetime) -> bool:
    """Not ready yet, but not known to be sick either: pending, or running and
    never ready since its start, within the startup timeout, without the worker
    reporting itself degraded. A pool whose new workers are starting is not
    degraded."""
    if w.ready:
        return False
    if w.phase == "pending":
        return True
    reported_degraded = w.stats is not None and w.stats.state == WorkerState.DEGRADED
    return (
        w.phase == "running"
        and w.never_ready
        and not reported_degraded
        and w.not_ready_for(now) < spec.health.startup_timeout_seconds
    )


def outdated_reason(w: ObservedWorker, spec: BridgePoolSpec, revision: str) -> Outdated | None:
    """Why a serving worker should be replaced gracefully, or None."""
    if w.revision != revision:
        return Outdated("rollout", f"revision {w.revision or '?'} -> {revision}")
    if w.stats is not None and w.stats.recycle.due:
        return Outdated("recycle", f"recycling due: {w.stats.recycle.reason or 'limit reached'}")
    if w.restart_count >= spec.health.max_restarts:
        return Outdated("restarts", plural(w.restart_count, "restart"))
    return None


def unready_detail(w: ObservedWorker, now: datetime) -> str:
    """What is wrong with a worker that is not ready, for a human: since when,
    and what the operator can tell about why. The time is absolute, so the
    message (and the status that holds it) stays the same pass after pass."""
    since = now - timedelta(seconds=w.not_ready_for(now))
    if w.waiting_reason:
        why = f"waiting: {w.waiting_reason}"
    elif w.phase != "running":
        why = w.phase
    elif w.stats is None:
        why = "readiness check failing; the worker does not answer its stats call either"
    elif w.stats.state == WorkerState.DEGRADED:
        why = "readiness check failing; the worker reports itself degraded"
    elif says_it_serves(w):
        why = (
            f"readiness check failing, though the worker answers as {w.stats.state.value}: "
            "the readiness checks are not getting through"
        )
    else:
        why = f"readiness check failing; the worker reports itself {w.stats.state.value}"
    return f"{w.name}: not ready since {format_time(since)} ({why})"

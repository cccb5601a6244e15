"""What the operator sees of one worker: parsed from its pod and its ``/v1/stats``.

Everything the planner decides from is here, and all of it comes from the
API server or the worker itself, never from the operator's memory; that is
what makes a restarted operator decide exactly as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridgepool import labels
from bridgepool.protocol import WorkerStats
from bridgepool.workers import pod_ready, ready_condition, worker_url

# Waiting reasons that a new pod would hit again: replacing it cannot help,
# so they degrade the pool instead (fixed by changing the template).
CONFIG_PROBLEMS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
CRASH_LOOP = "CrashLoopBackOff"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ObservedWorker:
    """One worker pod of a pool, as observed now."""

    name: str
    revision: str
    created_at: datetime
    phase: str = "Running"
    ready: bool = False
    # Last time the pod's Ready condition changed (either way).
    ready_changed_at: datetime | None = None
    # When the worker container last started (a restart starts it again).
    started_at: datetime | None = None
    deleting: bool = False
    draining_since: datetime | None = None
    drain_reason: str | None = None
    restart_count: int = 0
    waiting_reason: str | None = None
    waiting_message: str | None = None
    url: str | None = None  # the worker's base URL, while it has one
    stats: WorkerStats | None = None

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def not_ready_for(self, now: datetime) -> float:
        """Seconds the worker could have been ready but was not (0 when ready):
        since its Ready condition last changed or its container last started,
        whichever came later. Time spent creating the container (slow on a
        busy node) does not count against a worker that is starting."""
        if self.ready:
            return 0.0
        since = max(t for t in (self.ready_changed_at, self.started_at, self.created_at) if t)
        return max(0.0, (now - since).total_seconds())

    @property
    def never_ready(self) -> bool:
        """Not ready, and not ready at any time since its container last started:
        the Ready condition last changed before that start (when the pod was
        set up, or when an earlier container went unready)."""
        if self.ready or self.started_at is None:
            return not self.ready
        return self.ready_changed_at is None or self.ready_changed_at <= self.started_at

    @property
    def config_problem(self) -> bool:
        return self.waiting_reason in CONFIG_PROBLEMS

    @property
    def sessions(self) -> int | None:
        return None if self.stats is None else self.stats.sessions

    @property
    def in_flight(self) -> int | None:
        return None if self.stats is None else self.stats.in_flight


def stats_url(pod: Mapping[str, Any]) -> str | None:
    """Where the pod's worker answers ``GET /v1/stats``: on the container port
    named ``bridge`` (a template may choose its own), else None while the
    worker cannot be reached."""
    url = worker_url(pod)
    return None if url is None else url + "/v1/stats"


def observe_pod(pod: Mapping[str, Any], stats: WorkerStats | None = None) -> ObservedWorker:
    """Parse a pod (as the API returns it) into an :class:`ObservedWorker`."""
    meta = pod.get("metadata", {})
    status = pod.get("status") or {}
    annotations = meta.get("annotations") or {}
    pod_labels = meta.get("labels") or {}
    ready_changed_at = parse_time((ready_condition(pod) or {}).get("lastTransitionTime"))
    restarts = 0
    waiting_reason = waiting_message = None
    started_at = None
    for cs in status.get("containerStatuses") or []:
        restarts = max(restarts, int(cs.get("restartCount") or 0))
        running = (cs.get("state") or {}).get("running") or {}
        started = parse_time(running.get("startedAt"))
        if started is not None and (started_at is None or started > started_at):
            started_at = started
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") and waiting_reason is None:
            waiting_reason = waiting["reason"]
            waiting_message = waiting.get("message")
    created = parse_time(meta.get("creationTimestamp")) or datetime.fromtimestamp(0, UTC)
    return ObservedWorker(
        name=meta["name"],
        revision=pod_labels.get(labels.LABEL_REVISION, ""),
        created_at=created,
        phase=status.get("phase") or "Pending",
        ready=pod_ready(pod),
        ready_changed_at=ready_changed_at,
        started_at=started_at,
        deleting=meta.get("deletionTimestamp") is not None,
        # A drain mark with an unreadable time counts from the pod's creation.
        draining_since=(
            parse_time(annotations[labels.ANNOTATION_DRAINING]) or created
            if labels.ANNOTATION_DRAINING in annotations
            else None
        ),
        drain_reason=annotations.get(labels.ANNOTATION_DRAIN_REASON),
        restart_count=restarts,
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        url=worker_url(pod),
        stats=stats,
    )

"""What the operator sees of one worker: its pod (and its ``/v1/stats``),
translated into the planner's words (:class:`ObservedWorker`). Pod phases,
kubelet reasons and the drain annotations end here.

Everything the planner decides from comes from the API server or the worker
itself, never from the operator's memory; that is what makes a restarted
operator decide exactly as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from bridgepool import labels
from bridgepool.protocol import WorkerStats
from bridgepool.worker_http import WorkerHttp, fetch_stats
from bridgepool.workers import pod_ready, ready_condition, worker_url
from bridgepool_planner.drain import DrainReason
from bridgepool_planner.workers import (
    ObservedWorker,
    StartProblem,
    WorkerPhase,
    format_time,
    parse_time,
)

# The kubelet's reasons for a container that cannot start, which a new pod
# would hit again, as the pool reports them. ErrImagePull and ImagePullBackOff
# are one problem (the kubelet alternates between them while it retries): one
# reason, so one event.
START_PROBLEMS: dict[str, StartProblem] = {
    "ErrImagePull": "ImagePullBackOff",
    "ImagePullBackOff": "ImagePullBackOff",
    "InvalidImageName": "InvalidImageName",
    "ErrImageNeverPull": "ErrImageNeverPull",
    "CreateContainerConfigError": "CreateContainerConfigError",
    "CreateContainerError": "CreateContainerError",
}
CRASH_LOOP = "CrashLoopBackOff"
PHASES: dict[str, WorkerPhase] = {
    "Pending": "pending",
    "Running": "running",
    "Failed": "exited",
    "Succeeded": "exited",
}


def drain_annotations(since: datetime, reason: DrainReason) -> dict[str, str]:
    """The pod annotations that mark a worker draining."""
    return {
        labels.ANNOTATION_DRAINING: format_time(since),
        labels.ANNOTATION_DRAIN_REASON: reason,
    }


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
    phase = status.get("phase") or "Pending"
    return ObservedWorker(
        name=meta["name"],
        revision=pod_labels.get(labels.LABEL_REVISION, ""),
        created_at=created,
        # An unknown phase (the node lost contact) is a worker not known to run.
        phase=PHASES.get(phase, "pending"),
        ready=pod_ready(pod),
        ready_changed_at=ready_changed_at,
        started_at=started_at,
        stopping=meta.get("deletionTimestamp") is not None,
        # A drain mark with an unreadable time counts from the pod's creation.
        draining_since=(
            parse_time(annotations[labels.ANNOTATION_DRAINING]) or created
            if labels.ANNOTATION_DRAINING in annotations
            else None
        ),
        drain_reason=annotations.get(labels.ANNOTATION_DRAIN_REASON),
        restart_count=restarts,
        crash_looping=waiting_reason == CRASH_LOOP,
        start_problem=START_PROBLEMS.get(waiting_reason or ""),
        waiting_reason=None if waiting_reason is None else f"container {waiting_reason}",
        waiting_message=waiting_message,
        exit_detail=f"pod phase {phase}" if PHASES.get(phase) == "exited" else None,
        url=worker_url(pod),
        stats=stats,
    )


async def observe(http: WorkerHttp, pods: Iterable[Mapping[str, Any]]) -> list[ObservedWorker]:
    """The pool's worker pods, each with its worker's stats (read at once)."""
    pods = list(pods)

    async def stats_of(pod: Mapping[str, Any]) -> WorkerStats | None:
        url = worker_url(pod)
        return None if url is None else await fetch_stats(http, url)

    stats = await asyncio.gather(*(stats_of(p) for p in pods))
    return [observe_pod(p, s) for p, s in zip(pods, stats, strict=True)]

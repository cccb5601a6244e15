"""A worker as the planner sees it: what an executor observed of one worker
process (a pod on a cluster, a child process on one machine) and of its
``/v1/stats``, in words neither executor owns.

Everything the planner decides from is here, and all of it is observed (by
the executor from its platform, or from the worker itself), never
remembered: that is what makes a restarted operator or supervisor decide
exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from bridgepool.protocol import WorkerStats

# Where a worker's process is in its life, as its executor sees it:
# - pending: asked for, its process not started yet (scheduling, pulling, spawning);
# - running: its process runs (it may not be ready);
# - exited: its process ended for good and will not be restarted in place.
WorkerPhase = Literal["pending", "running", "exited"]

# A problem that keeps a worker's process from starting, which a new worker
# of the same template would hit again: replacing it cannot help, so it
# degrades the pool (fixed by changing the template). The names are the
# pool's Degraded reasons.
StartProblem = Literal[
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ConfigProblem",
]


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
    """One worker of a pool, as observed now."""

    name: str
    # The revision of the pool it was made from, as its executor labelled it.
    revision: str
    created_at: datetime
    phase: WorkerPhase = "running"
    ready: bool = False
    # Last time its readiness changed (either way).
    ready_changed_at: datetime | None = None
    # When its process last started (a restart in place starts it again).
    started_at: datetime | None = None
    # Asked to stop (deleted, evicted, signalled): it is finishing its calls.
    stopping: bool = False
    draining_since: datetime | None = None
    drain_reason: str | None = None
    restart_count: int = 0
    # Its process is restarted in place again and again, each time after a
    # longer wait (a crash loop).
    crash_looping: bool = False
    start_problem: StartProblem | None = None
    # Why its process is not running now, in its executor's words, for humans.
    waiting_reason: str | None = None
    waiting_message: str | None = None
    # How it exited, in its executor's words (``pod phase Failed``, ``exit code 1``).
    exit_detail: str | None = None
    url: str | None = None  # the worker's base URL, while it has one
    stats: WorkerStats | None = None

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def not_ready_for(self, now: datetime) -> float:
        """Seconds the worker could have been ready but was not (0 when ready):
        since its readiness last changed or its process last started,
        whichever came later. Time spent starting the process (slow on a busy
        node) does not count against a worker that is starting."""
        if self.ready:
            return 0.0
        since = max(t for t in (self.ready_changed_at, self.started_at, self.created_at) if t)
        return max(0.0, (now - since).total_seconds())

    @property
    def never_ready(self) -> bool:
        """Not ready, and not ready at any time since its process last started:
        its readiness last changed before that start (when the worker was
        made, or when an earlier process went unready)."""
        if self.ready or self.started_at is None:
            return not self.ready
        return self.ready_changed_at is None or self.ready_changed_at <= self.started_at

    @property
    def config_problem(self) -> bool:
        return self.start_problem is not None

    @property
    def sessions(self) -> int | None:
        return None if self.stats is None else self.stats.sessions

    @property
    def in_flight(self) -> int | None:
        return None if self.stats is None else self.stats.in_flight

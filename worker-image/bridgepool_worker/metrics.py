"""Prometheus metrics of one worker, in a registry of its own (several apps
may live in one test process). Labels stay bounded: command names come from
the registry (unknown ones are counted as ``unknown``), never a session id."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bridgepool.errors import ErrorCategory
from bridgepool.protocol import WorkerState

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls = Counter(
            "bridgepool_worker_calls_total",
            "Execute calls answered, by command and HTTP status.",
            ["command", "status"],
            registry=r,
        )
        self.call_seconds = Histogram(
            "bridgepool_worker_call_duration_seconds",
            "Time to answer an execute call, by command.",
            ["command"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "bridgepool_worker_errors_total",
            "Failed execute calls, by error category.",
            ["category"],
            registry=r,
        )
        self.rejected = Counter(
            "bridgepool_worker_rejected_total",
            "Calls refused before running: capacity, session cap, draining, restarted.",
            ["reason"],
            registry=r,
        )
        self.refused_callers = Counter(
            "bridgepool_worker_refused_callers_total",
            "Requests refused at the door: no key or a wrong one (unauthenticated), "
            "the scrape token off /metrics (forbidden).",
            ["reason"],
            registry=r,
        )
        self.in_flight = Gauge(
            "bridgepool_worker_in_flight_calls", "Calls running now.", registry=r
        )
        self.calls_waiting_for_slot = Gauge(
            "bridgepool_worker_calls_waiting_for_slot",
            "Calls waiting in line for a free call slot (routers that share this worker).",
            registry=r,
        )
        self.capacity = Gauge(
            "bridgepool_worker_capacity_calls", "Concurrent calls allowed.", registry=r
        )
        self.sessions = Gauge("bridgepool_worker_sessions", "Sessions held now.", registry=r)
        self.sessions_opened = Counter(
            "bridgepool_worker_sessions_opened_total", "Sessions created.", registry=r
        )
        self.replayed_calls = Counter(
            "bridgepool_worker_replayed_calls_total",
            "Session calls answered with the kept answer of an earlier attempt with the "
            "same call id (the command did not run again).",
            registry=r,
        )
        self.sessions_closed = Counter(
            "bridgepool_worker_sessions_closed_total",
            "Sessions ended, by reason (expired, deleted, moved).",
            ["reason"],
            registry=r,
        )
        # Moving sessions (moves.py): bounded labels, steps and error types of our own.
        self.sessions_exported = Counter(
            "bridgepool_worker_sessions_exported_total",
            "Sessions exported for a move (frozen here until committed, aborted or thawed).",
            registry=r,
        )
        self.sessions_imported = Counter(
            "bridgepool_worker_sessions_imported_total",
            "Sessions imported by a move (pending here until activated or dropped).",
            registry=r,
        )
        self.move_refusals = Counter(
            "bridgepool_worker_session_move_refusals_total",
            "Move steps refused, by step (export, import, commit, activate, abort) and error type.",
            ["step", "reason"],
            registry=r,
        )
        self.moves = Counter(
            "bridgepool_worker_session_moves_total",
            "Moves ended, by result: moved_out, moved_in; or the session stayed: aborted, "
            "expired, export_failed, activation_refused, discarded.",
            ["result"],
            registry=r,
        )
        self.sessions_moving = Gauge(
            "bridgepool_worker_sessions_moving",
            "Sessions frozen, committing or pending here: moves not yet decided.",
            registry=r,
        )
        self.calls_waiting_for_moves = Gauge(
            "bridgepool_worker_calls_waiting_for_moves",
            "Calls of moving sessions waiting for their move to be decided.",
            registry=r,
        )
        self.session_state_bytes = Histogram(
            "bridgepool_worker_session_state_bytes",
            "Size of exported session states (the envelope's canonical JSON).",
            buckets=(1024, 8192, 65536, 262144, 1048576, 4194304, 16777216, 67108864),
            registry=r,
        )
        self.state = Gauge(
            "bridgepool_worker_state",
            "1 for the worker's current lifecycle state, 0 for the others.",
            ["state"],
            registry=r,
        )
        self.transitions = Counter(
            "bridgepool_worker_state_transitions_total",
            "Lifecycle state changes, by new state.",
            ["state"],
            registry=r,
        )
        self.recycle_due = Gauge(
            "bridgepool_worker_recycle_due", "1 once a recycling limit is reached.", registry=r
        )
        self.rss = Gauge(
            "bridgepool_worker_memory_rss_bytes", "Resident memory of the process.", registry=r
        )
        self.uptime = Gauge(
            "bridgepool_worker_uptime_seconds", "Seconds since the worker started.", registry=r
        )
        self.set_state(WorkerState.INITIALIZING)
        # Error counters start at 0 for every category, so a rate() over them
        # reads 0 instead of "no data" on a worker that has not failed yet.
        for category in ErrorCategory:
            self.errors.labels(category=category.value)
        # Labelled children looked up once per (command, status): the hot path.
        self._call_children: dict[tuple[str, int], tuple[Counter, Histogram]] = {}

    def observe_call(self, command: str, status: int, seconds: float) -> None:
        children = self._call_children.get((command, status))
        if children is None:
            children = (
                self.calls.labels(command=command, status=str(status)),
                self.call_seconds.labels(command=command),
            )
            self._call_children[(command, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def set_state(self, current: WorkerState) -> None:
        for state in WorkerState:
            self.state.labels(state=state.value).set(1 if state == current else 0)

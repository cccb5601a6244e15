"""The router's Prometheus metrics, in a registry owned by one app.

Labels are bounded: pool, worker (a pod name at most), outcome/reason enums.
Never a session id.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
_OVERHEAD_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
)  # fmt: skip


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "bridgepool_router_requests_total",
            "Calls handled, by pool and outcome.",
            ["pool", "outcome"],
            registry=r,
        )
        self.duration = Histogram(
            "bridgepool_router_request_duration_seconds",
            "Time from receiving a call to answering it.",
            ["pool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "bridgepool_router_added_latency_seconds",
            "Time the router itself adds to a call (total minus worker time, queue "
            "wait and retry backoff).",
            ["pool"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "bridgepool_router_retries_total",
            "Retried attempts, by the failure that caused them.",
            ["pool", "reason"],
            registry=r,
        )
        self.budget_denied = Counter(
            "bridgepool_router_retry_budget_denied_total",
            "Retries not made because the pool's retry budget was used up.",
            ["pool"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "bridgepool_router_breaker_state",
            "Circuit breaker state per worker: 0 closed, 1 half-open, 2 open.",
            ["pool", "worker"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "bridgepool_router_breaker_transitions_total",
            "Circuit breaker state changes, by the state entered.",
            ["pool", "to"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "bridgepool_router_queue_depth",
            "Calls waiting for a free worker.",
            ["pool"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "bridgepool_router_queue_wait_seconds",
            "Time calls spent in the wait queue.",
            ["pool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_rejected = Counter(
            "bridgepool_router_queue_rejected_total",
            "Calls turned away because the queue was full or the wait timed out.",
            ["pool", "reason"],
            registry=r,
        )
        self.sessions = Counter(
            "bridgepool_router_session_lookups_total",
            "Session lookups: hit (table), found (asked the workers), new, rebound, "
            "moved (followed a session handed over with its state).",
            ["pool", "result"],
            registry=r,
        )
        self.panic_calls = Counter(
            "bridgepool_router_panic_calls_total",
            "Calls sent in panic mode: no worker was eligible, so every non-draining "
            "worker was a candidate, whatever its health or breaker said.",
            ["pool"],
            registry=r,
        )
        self.in_flight = Gauge(
            "bridgepool_router_worker_in_flight",
            "Calls in flight per worker, as the router counts them.",
            ["pool", "worker"],
            registry=r,
        )
        self.worker_up = Gauge(
            "bridgepool_router_worker_up",
            "Whether active health checks see the worker up (1) or down (0).",
            ["pool", "worker"],
            registry=r,
        )

        # Every metric above is labelled by pool; these three also by worker.
        self._by_pool = [
            m for m in vars(self).values() if isinstance(m, Counter | Gauge | Histogram)
        ]
        self._by_worker = (self.breaker_state, self.in_flight, self.worker_up)

    def for_pool(self, pool: str) -> PoolMetrics:
        return PoolMetrics(self, pool)

    def forget_worker(self, pool: str, worker: str) -> None:
        """Drop a worker's series once it has left its pool."""
        for metric in self._by_worker:
            metric.remove_by_labels({"pool": pool, "worker": worker})

    def forget_pool(self, pool: str) -> None:
        """Drop every series of a pool (and of its workers) once it has left
        discovery, so label cardinality follows the pools that exist."""
        for metric in self._by_pool:
            metric.remove_by_labels({"pool": pool})


# Why the queue turns a call away (the ``reason`` of queue_rejected).
QUEUE_REJECTIONS = ("full", "timeout")


class PoolMetrics:
    """One pool's label children, bound once: ``.labels()`` on every call costs more
    than the update it leads to."""

    def __init__(self, metrics: RouterMetrics, pool: str) -> None:
        self._metrics = metrics
        self.pool = pool
        self.duration = metrics.duration.labels(pool)
        self.overhead = metrics.overhead.labels(pool)
        self.queue_depth = metrics.queue_depth.labels(pool)
        self.queue_wait = metrics.queue_wait.labels(pool)
        self.session_hits = metrics.sessions.labels(pool, "hit")
        self.panic_calls = metrics.panic_calls.labels(pool)
        self._outcomes: dict[str, Counter] = {}
        # Counters of rare events start at 0 with the pool, so a rate() over
        # them reads 0 instead of "no data" until the first one happens.
        for reason in QUEUE_REJECTIONS:
            metrics.queue_rejected.labels(pool, reason)
        metrics.budget_denied.labels(pool)

    def outcome(self, outcome: str) -> Counter:
        """The requests counter for one outcome (a small fixed set, bound on first use)."""
        child = self._outcomes.get(outcome)
        if child is None:
            child = self._outcomes[outcome] = self._metrics.requests.labels(self.pool, outcome)
        return child

    def in_flight(self, worker: str) -> Gauge:
        return self._metrics.in_flight.labels(self.pool, worker)

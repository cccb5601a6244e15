"""The router's Prometheus metrics, in a registry owned by one app.

Labels are bounded: namespace and pool, worker (a pod name at most), outcome/reason enums.
Never a session id.

The four families every call updates (requests, their duration, the time the
router adds, session look-ups) are kept as plain numbers per pool and read by
a collector at scrape time. prometheus_client's own metrics take a lock on
every update, and those updates cost the call path more than its routing
does. No lock is needed: the router runs on one thread, its event loop, and
the scrape handler runs there too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from bridgepool.names import PoolRef

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
_OVERHEAD_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
)  # fmt: skip


@dataclass(frozen=True)
class Family:
    """A metric family the per-call collector exports: name, help, type, labels."""

    name: str
    documentation: str
    type: str  # "counter" or "histogram"
    labelnames: tuple[str, ...]


REQUESTS = Family(
    "bridgepool_router_requests", "Calls handled, by pool and outcome.", "counter",
    ("namespace", "pool", "outcome"),
)  # fmt: skip
DURATION = Family(
    "bridgepool_router_request_duration_seconds",
    "Time from receiving a call to answering it.",
    "histogram",
    ("namespace", "pool"),
)
OVERHEAD = Family(
    "bridgepool_router_added_latency_seconds",
    "Time the router itself adds to a call (total minus worker time, queue wait and "
    "retry backoff).",
    "histogram",
    ("namespace", "pool"),
)
SESSION_LOOKUPS = Family(
    "bridgepool_router_session_lookups",
    "Session lookups: hit (table), found (asked the workers), new, rebound, moved "
    "(followed a session handed over with its state).",
    "counter",
    ("namespace", "pool", "result"),
)
# The results of a session look-up (the ``result`` of SESSION_LOOKUPS).
SESSION_RESULTS = ("hit", "found", "new", "rebound", "moved")


class LoopHistogram:
    """A histogram's counts as plain numbers (see the module's docstring)."""

    __slots__ = ("_les", "bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket; the last one above every bound
        self.sum = 0.0
        self._les = [*(repr(float(b)) for b in bounds), "+Inf"]  # "le" as exposed

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the first bound >= value
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, observations at most le) for each bound and +Inf, as exposed."""
        out, total = [], 0
        for le, count in zip(self._les, self.counts, strict=True):
            total += count
            out.append((le, float(total)))
        return out


class _PerCallCollector(Collector):
    """Reads the per-call families from every pool's PoolMetrics at scrape time."""

    def __init__(self, pools: dict[PoolRef, PoolMetrics]) -> None:
        self._pools = pools

    def describe(self) -> Iterable[CounterMetricFamily | HistogramMetricFamily]:
        return self._families()

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests, duration, overhead, lookups = self._families()
        for ref, stats in self._pools.items():
            pool = [ref.namespace, ref.name]
            for outcome, count in stats.requests.items():
                requests.add_metric([*pool, outcome], count)
            for result, count in stats.session_lookups.items():
                lookups.add_metric([*pool, result], count)
            for family, histogram in ((duration, stats.duration), (overhead, stats.overhead)):
                family.add_metric(pool, histogram.cumulative(), histogram.sum)
        yield from (requests, duration, overhead, lookups)

    @staticmethod
    def _families() -> tuple[
        CounterMetricFamily, HistogramMetricFamily, HistogramMetricFamily, CounterMetricFamily
    ]:
        def counter(f: Family) -> CounterMetricFamily:
            return CounterMetricFamily(f.name, f.documentation, labels=f.labelnames)

        def histogram(f: Family) -> HistogramMetricFamily:
            return HistogramMetricFamily(f.name, f.documentation, labels=f.labelnames)

        return counter(REQUESTS), histogram(DURATION), histogram(OVERHEAD), counter(SESSION_LOOKUPS)


class RouterMetrics:
    # The families read from each pool's plain counts, for what lists exported metrics.
    PER_CALL = (REQUESTS, DURATION, OVERHEAD, SESSION_LOOKUPS)

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._pools: dict[PoolRef, PoolMetrics] = {}
        r.register(_PerCallCollector(self._pools))
        self.retries = Counter(
            "bridgepool_router_retries_total",
            "Retried attempts, by the failure that caused them.",
            ["namespace", "pool", "reason"],
            registry=r,
        )
        self.budget_denied = Counter(
            "bridgepool_router_retry_budget_denied_total",
            "Retries not made because the pool's retry budget was used up.",
            ["namespace", "pool"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "bridgepool_router_breaker_state",
            "Circuit breaker state per worker: 0 closed, 1 half-open, 2 open.",
            ["namespace", "pool", "worker"],
            registry=r,
        )
        self.breaker_transitions = Counter(
            "bridgepool_router_breaker_transitions_total",
            "Circuit breaker state changes, by the state entered.",
            ["namespace", "pool", "to"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "bridgepool_router_queue_depth",
            "Calls waiting for a free worker.",
            ["namespace", "pool"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "bridgepool_router_queue_wait_seconds",
            "Time calls spent in the wait queue.",
            ["namespace", "pool"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_rejected = Counter(
            "bridgepool_router_queue_rejected_total",
            "Calls turned away because the queue was full or the wait timed out.",
            ["namespace", "pool", "reason"],
            registry=r,
        )
        self.panic_calls = Counter(
            "bridgepool_router_panic_calls_total",
            "Calls sent in panic mode: no worker was eligible, so every non-draining "
            "worker was a candidate, whatever its health or breaker said.",
            ["namespace", "pool"],
            registry=r,
        )
        self.in_flight = Gauge(
            "bridgepool_router_worker_in_flight",
            "Calls in flight per worker, as the router counts them.",
            ["namespace", "pool", "worker"],
            registry=r,
        )
        self.worker_up = Gauge(
            "bridgepool_router_worker_up",
            "Whether active health checks see the worker up (1) or down (0).",
            ["namespace", "pool", "worker"],
            registry=r,
        )

        # Every metric above is labelled by pool; these three also by worker.
        self._by_pool = [
            m for m in vars(self).values() if isinstance(m, Counter | Gauge | Histogram)
        ]
        self._by_worker = (self.breaker_state, self.in_flight, self.worker_up)

    def for_pool(self, pool: PoolRef) -> PoolMetrics:
        stats = self._pools[pool] = PoolMetrics(self, pool)
        return stats

    def forget_worker(self, pool: PoolRef, worker: str) -> None:
        """Drop a worker's series once it has left its pool."""
        for metric in self._by_worker:
            metric.remove_by_labels(
                {"namespace": pool.namespace, "pool": pool.name, "worker": worker}
            )

    def forget_pool(self, pool: PoolRef) -> None:
        """Drop every series of a pool (and of its workers) once it has left
        discovery, so label cardinality follows the pools that exist."""
        for metric in self._by_pool:
            metric.remove_by_labels({"namespace": pool.namespace, "pool": pool.name})
        self._pools.pop(pool, None)


# Why the queue turns a call away (the ``reason`` of queue_rejected).
QUEUE_REJECTIONS = ("full", "timeout")


class PoolMetrics:
    """One pool's per-call counts (plain numbers, see the module's docstring), and
    its label children of the other metrics, bound once: ``.labels()`` on every
    call costs more than the update it leads to."""

    def __init__(self, metrics: RouterMetrics, ref: PoolRef) -> None:
        self._metrics = metrics
        pool = (ref.namespace, ref.name)
        self.pool = pool
        self.requests: dict[str, int] = {}  # by outcome
        self.duration = LoopHistogram(_LATENCY_BUCKETS)
        self.overhead = LoopHistogram(_OVERHEAD_BUCKETS)
        self.session_lookups = dict.fromkeys(SESSION_RESULTS, 0)
        self.queue_depth = metrics.queue_depth.labels(*pool)
        self.queue_wait = metrics.queue_wait.labels(*pool)
        self.panic_calls = metrics.panic_calls.labels(*pool)
        # Counters of rare events start at 0 with the pool, so a rate() over
        # them reads 0 instead of "no data" until the first one happens.
        for reason in QUEUE_REJECTIONS:
            metrics.queue_rejected.labels(*pool, reason)
        metrics.budget_denied.labels(*pool)

    def call_done(self, outcome: str, seconds: float, added_seconds: float) -> None:
        """Count a call: its outcome (a small fixed set), how long it took, and
        how much of that the router added."""
        self.requests[outcome] = self.requests.get(outcome, 0) + 1
        self.duration.observe(seconds)
        self.overhead.observe(added_seconds)

    def session_lookup(self, result: str) -> None:
        """Count a session look-up by its result (one of SESSION_RESULTS)."""
        self.session_lookups[result] += 1

    def in_flight(self, worker: str) -> Gauge:
        return self._metrics.in_flight.labels(*self.pool, worker)

    def retried(self, reason: str) -> None:
        """Count a retried attempt, by the failure that caused it (a ``FailureKind``)."""
        self._metrics.retries.labels(*self.pool, reason).inc()

    def retry_budget_denied(self) -> None:
        """Count a retry not made because the pool's retry budget was used up."""
        self._metrics.budget_denied.labels(*self.pool).inc()

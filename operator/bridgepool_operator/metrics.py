"""Prometheus metrics of the operator, named like controller-runtime's."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_TOTAL = Counter(
    "bridgepool_operator_reconcile_total",
    "Reconcile passes over a pool, by result (success, error, requeue, invalid).",
    ["result"],
)
RECONCILE_TIME = Histogram(
    "bridgepool_operator_reconcile_time_seconds",
    "Duration of one reconcile pass over a pool (observe, plan, execute).",
    # Doubling from 0.5 ms: an idle pass takes a few ms, a busy one seconds.
    buckets=tuple(0.0005 * 2**i for i in range(16)),
)
POD_ACTIONS_TOTAL = Counter(
    "bridgepool_operator_pod_actions_total",
    "Pod actions taken (create, drain, delete; create-refused: the API server refused "
    "the template), by action and reason.",
    ["action", "reason"],
)
SESSION_MOVES_TOTAL = Counter(
    "bridgepool_operator_session_moves_total",
    "Sessions of draining workers the operator tried to move, by result (moved; "
    "cannot-move: refused for good, e.g. too large; failed: tried again later).",
    ["result"],
)
POOL_DESIRED = Gauge(
    "bridgepool_operator_pool_desired_workers", "Desired workers of a pool.", ["namespace", "pool"]
)
POOL_READY = Gauge(
    "bridgepool_operator_pool_ready_workers",
    "Ready, non-draining workers of a pool.",
    ["namespace", "pool"],
)
POOL_UTILIZATION = Gauge(
    "bridgepool_operator_pool_utilization_ratio",
    "In-flight calls / capacity across a pool's ready workers (0..1).",
    ["namespace", "pool"],
)


def forget_pool(namespace: str, pool: str) -> None:
    """Drop a deleted pool's series, so label cardinality stays bounded."""
    for gauge in (POOL_DESIRED, POOL_READY, POOL_UTILIZATION):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, pool)

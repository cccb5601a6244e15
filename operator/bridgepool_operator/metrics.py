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
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
POD_ACTIONS_TOTAL = Counter(
    "bridgepool_operator_pod_actions_total",
    "Pod actions taken (create, drain, delete), by action and reason.",
    ["action", "reason"],
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

"""Prometheus metrics of the local supervisor: the operator's, with the
supervisor's prefix (one reads the other's dashboards with a rename)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from bridgepool.spec import BridgePoolStatus

PASSES = Counter(
    "bridgepool_local_reconcile_total",
    "Passes over the pool, by result (success, error, requeue, invalid).",
    ["result"],
)
PASS_SECONDS = Histogram(
    "bridgepool_local_reconcile_time_seconds",
    "Duration of one pass over the pool (observe, plan, apply).",
    buckets=tuple(0.0005 * 2**i for i in range(16)),
)
WORKER_ACTIONS = Counter(
    "bridgepool_local_worker_actions_total",
    "Worker actions taken (create, drain, delete; create-refused: the worker command "
    "cannot start), by action and reason.",
    ["action", "reason"],
)
SESSION_MOVES = Counter(
    "bridgepool_local_session_moves_total",
    "Sessions of draining workers the supervisor tried to move, by result.",
    ["result"],
)
POOL_DESIRED = Gauge(
    "bridgepool_local_pool_desired_workers", "Desired workers of the pool.", ["namespace", "pool"]
)
POOL_READY = Gauge(
    "bridgepool_local_pool_ready_workers",
    "Ready, non-draining workers of the pool.",
    ["namespace", "pool"],
)
POOL_UTILIZATION = Gauge(
    "bridgepool_local_pool_utilization_ratio",
    "In-flight calls / capacity across the pool's ready workers (0..1).",
    ["namespace", "pool"],
)


def record_status(namespace: str, name: str, status: BridgePoolStatus) -> None:
    POOL_DESIRED.labels(namespace, name).set(status.desired_replicas)
    POOL_READY.labels(namespace, name).set(status.ready_replicas)
    if status.utilization is not None:
        POOL_UTILIZATION.labels(namespace, name).set(status.utilization / 100.0)

"""The metrics of the passes over pools, the same for every executor: the
operator's (``bridgepool_operator_*``, named like controller-runtime's) and
the local supervisor's (``bridgepool_local_*``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from bridgepool.spec import BridgePoolStatus


@dataclass
class PassMetrics:
    passes: Counter
    pass_seconds: Histogram
    worker_actions: Counter
    session_moves: Counter
    desired: Gauge
    ready: Gauge
    utilization: Gauge

    def record_pass(self, outcome: str, seconds: float) -> None:
        self.passes.labels(outcome).inc()
        self.pass_seconds.observe(seconds)

    def record_status(self, namespace: str, name: str, status: BridgePoolStatus) -> None:
        self.desired.labels(namespace, name).set(status.desired_replicas)
        self.ready.labels(namespace, name).set(status.ready_replicas)
        if status.utilization is not None:
            self.utilization.labels(namespace, name).set(status.utilization / 100.0)

    def forget_pool(self, namespace: str, name: str) -> None:
        """Drop a deleted pool's series, so label cardinality stays bounded."""
        for gauge in (self.desired, self.ready, self.utilization):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)


def pass_metrics(prefix: str, *, actions: str, actions_help: str, mover: str) -> PassMetrics:
    """The metrics under ``prefix``; ``actions``: the name of the worker
    actions' counter (``pod_actions`` on a cluster), ``mover``: who moves
    draining workers' sessions."""
    pool = ["namespace", "pool"]
    return PassMetrics(
        passes=Counter(
            f"{prefix}_reconcile_total",
            "Reconcile passes over a pool, by result (success, error, requeue, invalid).",
            ["result"],
        ),
        pass_seconds=Histogram(
            f"{prefix}_reconcile_time_seconds",
            "Duration of one reconcile pass over a pool (observe, plan, execute).",
            # Doubling from 0.5 ms: an idle pass takes a few ms, a busy one seconds.
            buckets=tuple(0.0005 * 2**i for i in range(16)),
        ),
        worker_actions=Counter(f"{prefix}_{actions}_total", actions_help, ["action", "reason"]),
        session_moves=Counter(
            f"{prefix}_session_moves_total",
            f"Sessions of draining workers {mover} tried to move, by result (moved; "
            "cannot-move: refused for good, e.g. too large; failed: tried again later).",
            ["result"],
        ),
        desired=Gauge(f"{prefix}_pool_desired_workers", "Desired workers of a pool.", pool),
        ready=Gauge(f"{prefix}_pool_ready_workers", "Ready, non-draining workers of a pool.", pool),
        utilization=Gauge(
            f"{prefix}_pool_utilization_ratio",
            "In-flight calls / capacity across a pool's ready workers (0..1).",
            pool,
        ),
    )

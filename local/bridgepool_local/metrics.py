"""Prometheus metrics of the local supervisor: the operator's, with the
supervisor's prefix (one reads the other's dashboards with a rename)."""

from __future__ import annotations

from bridgepool_planner.metrics import pass_metrics

METRICS = pass_metrics(
    "bridgepool_local",
    actions="worker_actions",
    actions_help="Worker actions taken (create, drain, delete; create-refused: the worker "
    "command cannot start), by action and reason.",
    mover="the supervisor",
)

"""Prometheus metrics of the operator, named like controller-runtime's."""

from __future__ import annotations

from bridgepool_planner.metrics import pass_metrics

METRICS = pass_metrics(
    "bridgepool_operator",
    actions="pod_actions",
    actions_help="Pod actions taken (create, drain, delete; create-refused: the API server "
    "refused the template), by action and reason.",
    mover="the operator",
)

"""Expectations: whether kopf's views show what a pass changed yet.

The next pass over a pool must plan from views that include the last pass's
own changes (the pods it created, drained or deleted; the status it wrote);
planning from older views would create the same pods again. This is the
ReplicaSet controller's "expectations", kept per pass
(:class:`~bridgepool_planner.passes.PassResult`). Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bridgepool import labels
from bridgepool_planner.passes import PassResult


def pass_visible(
    result: PassResult, pool: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> bool:
    """Whether the pool object and the pod index reflect the pass's own changes yet."""
    if result.status_written_over is not None and (
        pool.get("metadata", {}).get("resourceVersion") == result.status_written_over
    ):
        return False
    seen: dict[str, Mapping[str, Any]] = {p["metadata"]["name"]: p["metadata"] for p in pods}
    if any(name not in seen for name in result.created):
        return False
    for name in result.drained:
        annotations = (seen.get(name) or {}).get("annotations") or {}
        if name in seen and labels.ANNOTATION_DRAINING not in annotations:
            return False
    return all(name not in seen or seen[name].get("deletionTimestamp") for name in result.stopped)

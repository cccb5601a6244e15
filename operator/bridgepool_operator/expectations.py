"""Expectations: what a pass changed, and whether kopf's views show it yet.

The next pass over a pool must plan from views that include the last pass's
own changes (the pods it created, drained or deleted; the status it wrote);
planning from older views would create the same pods again. This is the
ReplicaSet controller's "expectations", kept per pass. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridgepool import labels


@dataclass
class PassResult:
    """What a pass changed, so the next one waits until it can see it."""

    created: set[str] = field(default_factory=set)
    drained: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    # The pool's resourceVersion the pass planned from, when it wrote a new
    # status: the next pass must plan from a newer pool (its own status), or
    # it would repeat the decisions and events of this one.
    status_written_over: str | None = None
    # Sessions moved off draining workers: the next pass may delete them.
    sessions_moved: int = 0

    @property
    def pods_changed(self) -> bool:
        return bool(self.created or self.drained or self.deleted)


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
    return all(name not in seen or seen[name].get("deletionTimestamp") for name in result.deleted)

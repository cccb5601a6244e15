"""kopf's pod index (each pool's pods, slimmed to what the planner reads) and
the wake-ups: a change of a pool's pods or of its spec starts a pass now."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridgepool import labels

from .runtime import Runtime


def owner_pool(meta: Mapping[str, Any]) -> str | None:
    """The BridgePool that controls a pod, from its owner reference."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == labels.KIND and ref.get("apiVersion", "").startswith(labels.GROUP):
            return str(ref["name"])
    return None


def index_pod(namespace: str, meta: Mapping[str, Any], body: Mapping[str, Any]) -> dict[Any, Any]:
    """Index entry: (namespace, pool) -> the parts of the pod the planner reads."""
    pool = owner_pool(meta)
    if pool is None:
        return {}
    slim = {
        "metadata": {
            k: meta.get(k)
            for k in (
                "name",
                "labels",
                "annotations",
                "creationTimestamp",
                "deletionTimestamp",
            )
        },
        # The worker's port, if the template names its own (worker_url reads it).
        "spec": {
            "containers": [
                {"ports": c.get("ports")} for c in (body.get("spec") or {}).get("containers") or []
            ]
        },
        "status": dict(body.get("status") or {}),
    }
    return {(namespace, pool): slim}


def wake_for_pod(runtime: Runtime, namespace: str, meta: Mapping[str, Any]) -> None:
    pool = owner_pool(meta)
    if pool is not None:
        runtime.wakeup((namespace, pool)).set()


def wake_for_pool(
    runtime: Runtime, namespace: str, name: str, meta: Mapping[str, Any], status: Mapping[str, Any]
) -> None:
    # Our own status writes also arrive here; only a new spec needs a pass now.
    if meta.get("generation") != status.get("observedGeneration"):
        runtime.wakeup((namespace, name)).set()

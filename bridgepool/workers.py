"""A worker pod in the pool's terms: where its worker listens, and whether the
kubelet reports it Ready. Written once here for the operator, the router, the
end-to-end tests and the benchmarks.

A pod may come as the API's JSON (a mapping with camelCase keys, as watches
and kopf deliver it) or as a ``kubernetes`` client model (snake_case
attributes); both are read the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bridgepool.protocol import WORKER_PORT, WORKER_PORT_NAME

# The JSON keys whose client-model attribute is not the key itself.
_ATTRIBUTES = {"podIP": "pod_ip", "containerPort": "container_port"}


def _field(obj: object, key: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, _ATTRIBUTES.get(key, key), None)


def _items(obj: object, key: str) -> Iterator[Any]:
    yield from _field(obj, key) or ()


def ready_condition(pod: object) -> Any:
    """The pod's ``Ready`` condition, or None when it has none yet."""
    for condition in _items(_field(pod, "status"), "conditions"):
        if _field(condition, "type") == "Ready":
            return condition
    return None


def pod_ready(pod: object) -> bool:
    """Whether the kubelet reports the pod Ready (its readiness probe passes)."""
    return bool(_field(ready_condition(pod), "status") == "True")


def worker_port(pod: object) -> int:
    """The port of the container port named ``bridge``, else the default worker port."""
    for container in _items(_field(pod, "spec"), "containers"):
        for port in _items(container, "ports"):
            number = _field(port, "containerPort")
            if _field(port, "name") == WORKER_PORT_NAME and number:
                return int(number)
    return WORKER_PORT


def worker_url(pod: object) -> str | None:
    """The base URL of the pod's worker (``http://10.0.0.7:8080``, an IPv6
    address in brackets), or None while the pod is not running or has no IP."""
    status = _field(pod, "status")
    ip = _field(status, "podIP")
    if not ip or _field(status, "phase") != "Running":
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{worker_port(pod)}"

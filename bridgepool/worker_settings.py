"""The pool's worker settings as the ``BRIDGEPOOL_WORKER_*`` variables a
worker reads: the same for a worker pod (the operator puts them into the
pod's environment) and a local worker process (``bridgepool run``)."""

from __future__ import annotations

from bridgepool.spec import BridgePoolSpec

# Share of the termination grace period the worker may spend finishing calls;
# the rest is margin before its executor's SIGKILL.
WORKER_GRACE_SHARE = 0.8


def worker_settings(spec: BridgePoolSpec, keys_dir: str) -> dict[str, str]:
    """The variables carrying ``spec``'s worker settings; the worker reads the
    pool's keys from ``keys_dir``."""
    values: dict[str, object | None] = {
        "BRIDGEPOOL_WORKER_CAPACITY": spec.worker.capacity,
        "BRIDGEPOOL_WORKER_SESSION_TTL_SECONDS": spec.sessions.idle_ttl_seconds,
        "BRIDGEPOOL_WORKER_MAX_SESSIONS": spec.sessions.max_per_worker,
        "BRIDGEPOOL_WORKER_MAX_REQUESTS": spec.worker.max_requests,
        "BRIDGEPOOL_WORKER_MAX_AGE_SECONDS": spec.worker.max_age_seconds,
        "BRIDGEPOOL_WORKER_MAX_RSS_BYTES": spec.worker.max_rss_bytes,
        "BRIDGEPOOL_WORKER_GRACE_SECONDS": round(
            spec.rollout.termination_grace_period_seconds * WORKER_GRACE_SHARE, 3
        ),
        # A worker stopped from outside (kubectl delete pod, a node drain's
        # eviction, a signal) waits for its executor to move its sessions
        # before it exits.
        "BRIDGEPOOL_WORKER_HANDOFF_SESSIONS": "true" if spec.sessions.move_on_drain else None,
        # Once drained, a worker lingers one health check of the routers (its
        # interval and timeout): they see it terminating and drop their
        # kept-alive connections to it before it exits.
        "BRIDGEPOOL_WORKER_EXIT_LINGER_SECONDS": round(
            spec.routing.health.interval_seconds + spec.routing.health.timeout_seconds, 3
        ),
        "BRIDGEPOOL_WORKER_KEYS_DIR": keys_dir,
    }
    return {k: str(v) for k, v in values.items() if v is not None}

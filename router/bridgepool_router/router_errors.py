"""The errors the router itself produces, built from the shared error model.

Each helper names the problem and carries the context a caller needs; the
status follows the table in :mod:`bridgepool.errors` (502 no usable answer from
a worker, 503 no capacity now, 504 out of time).
"""

from __future__ import annotations

from typing import Any

from bridgepool import errors
from bridgepool.errors import BridgePoolError, ErrorCategory
from bridgepool.names import PoolRef


def bad_request(type_: str, message: str, **context: Any) -> BridgePoolError:
    return BridgePoolError.make(ErrorCategory.COMMUNICATION, type_, message, status=400, **context)


def unknown_pool(ref: PoolRef) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.RESOURCE,
        "unknown_pool",
        f"no pool named {ref.name!r} in namespace {ref.namespace!r}",
        status=404,
        namespace=ref.namespace,
        pool=ref.name,
    )


def discovery_not_synced(ref: PoolRef) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.INITIALIZATION,
        "discovery_not_synced",
        f"the router has not finished discovering its pools; pool {str(ref)!r} may still appear",
        status=503,
        retryable=True,
        namespace=ref.namespace,
        pool=ref.name,
    )


def session_mismatch(path_id: str, body_id: object) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.SESSION,
        "session_mismatch",
        f"body session_id {body_id!r} disagrees with the path's {path_id!r}",
        status=400,
        path_session_id=path_id,
        body_session_id=body_id,
    )


def session_not_found(pool: str, session_id: str) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.SESSION,
        "session_not_found",
        f"no worker of pool {pool!r} holds session {session_id!r}",
        status=404,
        pool=pool,
        session_id=session_id,
    )


def no_workers(pool: str) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.RESOURCE,
        "no_workers",
        f"pool {pool!r} has no worker that can take the call",
        status=503,
        retryable=True,
        pool=pool,
    )


def queue_full(pool: str, max_length: int) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.RESOURCE,
        "queue_full",
        f"every worker of pool {pool!r} is busy and {max_length} calls are already waiting",
        status=503,
        retryable=True,
        pool=pool,
        queue_max_length=max_length,
    )


def queue_timeout(pool: str, waited: float) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.RESOURCE,
        "queue_timeout",
        f"no worker of pool {pool!r} became free within {waited:.3f}s",
        status=503,
        retryable=True,
        pool=pool,
        waited_seconds=round(waited, 3),
    )


def call_timeout(pool: str, timeout: float, worker: str | None) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.TIMEOUT,
        "call_timeout",
        f"the call to pool {pool!r} did not finish within {timeout:.3f}s",
        status=504,
        retryable=False,
        pool=pool,
        worker=worker,
        timeout_seconds=timeout,
    )


def worker_unreachable(pool: str, worker: str, detail: str) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.CONNECTION,
        "worker_unreachable",
        f"worker {worker!r} of pool {pool!r} could not be reached: {detail}",
        status=502,
        retryable=True,
        pool=pool,
        worker=worker,
    )


def worker_disconnected(pool: str, worker: str, detail: str) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.CONNECTION,
        "worker_disconnected",
        f"worker {worker!r} of pool {pool!r} dropped the call: {detail}",
        status=502,
        # The worker may have run the call; only the caller knows whether it is safe.
        retryable=False,
        pool=pool,
        worker=worker,
    )


def unauthenticated(reason: str) -> BridgePoolError:
    """401: who is calling is not known (no token, a malformed one, or one the
    API server refused). Answered with ``WWW-Authenticate: Bearer``."""
    return errors.unauthenticated(reason)


def forbidden(username: str, access: str) -> BridgePoolError:
    """403: the caller is known, and RBAC does not allow what it asked."""
    return errors.forbidden(
        f"{username!r} may not {access}; bind a Role that grants it",
        user=username,
        missing=access,
    )


def auth_unavailable(review: str, detail: str) -> BridgePoolError:
    """503: the API server did not answer a review. Never treated as an allow."""
    return BridgePoolError.make(
        ErrorCategory.CONNECTION,
        "auth_unavailable",
        f"the API server did not answer the {review}, so the call is refused: {detail}",
        status=503,
        retryable=True,
        review=review,
    )


def ambiguous_pool(pool: str, namespaces: list[str]) -> BridgePoolError:
    """409: the short form /v1/pools/{pool} names a pool several namespaces have."""
    return BridgePoolError.make(
        ErrorCategory.RESOURCE,
        "ambiguous_pool",
        f"pool {pool!r} exists in namespaces {namespaces}; name one: "
        f"/v1/namespaces/<namespace>/pools/{pool}/...",
        status=409,
        pool=pool,
        namespaces=namespaces,
    )


def unknown_holder(pool: str, session_id: str, holder_url: str, waited: float) -> BridgePoolError:
    """502: the session's worker says it moved to a worker this router does not
    know as one of the pool's (after waiting ``waited`` seconds for discovery)."""
    return BridgePoolError.make(
        ErrorCategory.SESSION,
        "unknown_holder",
        f"session {session_id!r} of pool {pool!r} moved to {holder_url}, which is not a worker "
        f"of the pool this router knows (waited {waited:.1f}s for discovery); the call did "
        "not run",
        status=502,
        retryable=False,
        pool=pool,
        session_id=session_id,
        holder_url=holder_url,
    )

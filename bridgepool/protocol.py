"""The worker wire protocol: request and response bodies, and shared headers.

The router forwards these bodies unchanged, so a client speaks the same
protocol to a worker directly or through the router.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from bridgepool.errors import ErrorInfo
from bridgepool.names import session_key_problem

# Default port of a worker inside its pod, and the container port's name
# the router looks for.
WORKER_PORT = 8080
WORKER_PORT_NAME = "bridge"

# Largest request body a worker or the router accepts, in bytes.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

# Headers.
HEADER_WORKER = "X-BridgePool-Worker"  # response: the worker that served the call
HEADER_SESSION_REBOUND = "X-BridgePool-Session-Rebound"  # response: "true" if moved
# response, with a rebound: why (worker_gone | worker_unreachable), and who held it
HEADER_REBOUND_REASON = "X-BridgePool-Session-Rebound-Reason"
HEADER_PREVIOUS_WORKER = "X-BridgePool-Previous-Worker"
# response of a worker: a token new at every start of its process. A worker
# restarted in place keeps its name but not its sessions; this tells them apart.
HEADER_INCARNATION = "X-BridgePool-Worker-Incarnation"
# request, with a session call: the process token the caller last saw from this
# worker. Another process answers 412 ``worker_restarted`` and runs nothing, so a
# caller whose view is stale never runs a call on a fresh copy of the session.
HEADER_EXPECT_INCARNATION = "X-BridgePool-Expect-Incarnation"
HEADER_TIMEOUT = "X-BridgePool-Timeout"  # request: seconds; may only lower the default
HEADER_IDEMPOTENT = "X-BridgePool-Idempotent"  # request: "true" lets anonymous calls retry
HEADER_SESSION = "X-BridgePool-Session"  # request/response: the session id, for proxies
# request to a worker: "true" lets the call wait in line for a call slot (within
# its budget) instead of a 503 at once; routers that share a worker send it.
HEADER_WAIT_FOR_SLOT = "X-BridgePool-Wait-For-Slot"
# request: the call's id (a session id's characters). A session call carrying
# one runs once: a retry with the same id gets the first attempt's answer,
# marked by HEADER_REPLAYED, and the command does not run again. The router
# gives every session call one (the caller's, or its own).
HEADER_CALL_ID = "X-BridgePool-Call-Id"
HEADER_REPLAYED = "X-BridgePool-Replayed"  # response: "true" on a kept answer


def call_budget(requested: str | None, default: float) -> float:
    """The time budget of one call, in seconds: ``default``, or less when the
    caller's :data:`HEADER_TIMEOUT` value asks for less (it can never raise it).

    Raises ``ValueError`` naming the header when the value is not a positive,
    finite number of seconds.
    """
    if requested is None:
        return default
    try:
        asked = float(requested)
    except ValueError:
        asked = math.nan
    if not 0 < asked < math.inf:
        raise ValueError(
            f"{HEADER_TIMEOUT} must be a positive number of seconds; got {requested!r}"
        )
    return min(asked, default)


class WorkerState(StrEnum):
    """A worker's lifecycle: initializing -> ready <-> busy -> degraded -> terminating
    -> terminated."""

    INITIALIZING = "initializing"
    READY = "ready"
    BUSY = "busy"
    DEGRADED = "degraded"
    TERMINATING = "terminating"
    TERMINATED = "terminated"


def _session_key(value: str) -> str:
    problem = session_key_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# A session as workers know it: a session id, or the owned key the router made
# of one (:func:`bridgepool.names.owned_session_key`).
SessionKey = Annotated[str, AfterValidator(_session_key)]


class ExecuteRequest(BaseModel):
    """``POST /v1/execute``: run one command, optionally inside a session."""

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = None
    command: str = Field(min_length=1, max_length=256)
    args: dict[str, Any] = Field(default_factory=dict)
    session_id: SessionKey | None = None


class ExecuteResponse(BaseModel):
    """The answer to an :class:`ExecuteRequest`: a result or an error, never both."""

    model_config = ConfigDict(extra="forbid")

    id: str | int | None = None
    success: bool
    result: Any = None
    error: ErrorInfo | None = None


class SessionInfo(BaseModel):
    """One session a worker holds."""

    session_id: str
    created_at: float  # unix seconds
    last_activity: float  # unix seconds
    idle_seconds: float
    expires_in_seconds: float
    # Frozen for a move: its calls wait; once moved it is no longer listed here.
    moving: bool = False
    # It came here by a move, its state with it: a router whose binding to the
    # old worker broke follows it here without telling its caller state was lost.
    moved_in: bool = False
    # Why it cannot move (one of bridgepool.moves.wire.CANNOT_MOVE), when an
    # export of it here failed for good: a mover that restarts learns it here
    # instead of trying again. Cleared by an export that succeeds; it goes when
    # the session ends here.
    unmovable: str | None = None


class SessionsResponse(BaseModel):
    """``GET /v1/sessions``: the sessions this worker holds. Workers are the source of
    truth for sessions; a router rebuilds its session table from these."""

    worker: str
    sessions: list[SessionInfo]


class RecycleStatus(BaseModel):
    """Whether a worker has reached a recycling limit and should be replaced."""

    due: bool = False
    reason: str | None = None


class WorkerStats(BaseModel):
    """``GET /v1/stats``."""

    worker: str
    state: WorkerState
    accepting_sessions: bool
    in_flight: int
    # In-flight calls averaged over time (exponentially, time constant about
    # 10 s): the load the autoscaler reads. None from a worker that predates it.
    in_flight_average: float | None = None
    capacity: int
    requests_total: int
    errors_total: int
    errors_by_category: dict[str, int]
    uptime_seconds: float
    memory_rss_bytes: int
    sessions: int
    max_sessions: int
    session_ttl_seconds: float
    recycle: RecycleStatus
    # Sessions here that cannot move (SessionInfo.unmovable), counted by reason.
    unmovable_sessions: dict[str, int] = Field(default_factory=dict)


class Readiness(BaseModel):
    """``GET /readyz`` body. 200 when ``ready``, 503 otherwise.

    It carries what a router needs on every health check, so one request per
    interval suffices: capacity and load, whether new sessions are welcome,
    and whether a recycling limit has been reached (the operator then
    replaces the worker gracefully; until then it keeps serving).
    """

    worker: str
    ready: bool
    state: WorkerState
    reason: str | None = None  # why not ready, when not
    capacity: int
    in_flight: int
    accepting_sessions: bool
    recycle: RecycleStatus = Field(default_factory=RecycleStatus)
    incarnation: str = ""  # as HEADER_INCARNATION

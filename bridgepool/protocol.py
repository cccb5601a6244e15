"""The worker wire protocol: request and response bodies, and shared headers.

The router forwards these bodies unchanged, so a client speaks the same
protocol to a worker directly or through the router.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
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
    # Why it cannot move (one of CANNOT_MOVE), when an export of it here failed
    # for good: a mover that restarts learns it here instead of trying again.
    # Cleared by an export that succeeds; it goes when the session ends here.
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


# -- moving a session between workers ---------------------------------------------
#
# A mover (the operator on a drain, or anyone) moves session S from worker A
# to worker B in three calls; the steps and their crash safety are explained
# in bridgepool_worker.moves:
#
#   POST A/v1/sessions/S/export                       -> SessionExport (A: frozen)
#   POST B/v1/sessions/S/import   body: the envelope  -> MoveInfo (B: pending)
#   POST A/v1/sessions/S/commit   CommitRequest       -> MoveInfo (A: moved, B: live)
#
# and POST {A or B}/v1/sessions/S/abort (MoveRef) to give up before the commit.

# Version of the SessionEnvelope format this code writes and reads.
SESSION_FORMAT_VERSION = 1

# Error types a router or mover acts on (category ``session``):
SESSION_MOVING = "session_moving"  # 503, retryable: the session is frozen for a move
SESSION_MOVED = "session_moved"  # 410: context ``holder`` and ``holder_url`` name its worker
WORKER_RESTARTED = "worker_restarted"  # 412: not the process HEADER_EXPECT_INCARNATION names
# An export's error types (422) that say the session cannot move as it is, not
# "not now": the worker remembers which as the session's SessionInfo.unmovable.
SESSION_TOO_LARGE = "session_too_large"  # its envelope is over the worker's size limit
MOVE_REFUSED = "move_refused"  # a state exporter refused (bridgepool_worker.MoveRefused)
UNSERIALIZABLE_STATE = "unserializable_state"  # some state does not survive JSON
EXPORT_FAILED = "export_failed"  # a state exporter raised
CANNOT_MOVE = frozenset({SESSION_TOO_LARGE, MOVE_REFUSED, UNSERIALIZABLE_STATE, EXPORT_FAILED})


class MoveState(StrEnum):
    """Where a session stands in a move, on the worker that answers."""

    FROZEN = "frozen"  # source: exported; calls wait, then 503 session_moving
    COMMITTING = "committing"  # source: committed; telling the target to go live
    MOVED = "moved"  # source: state dropped; calls get 410 session_moved
    PENDING = "pending"  # target: imported copy, not live until the source commits
    LIVE = "live"  # the session is served here (source thawed, or target activated)
    DISCARDED = "discarded"  # target: the imported copy was dropped


class SessionEnvelope(BaseModel):
    """A session's state in transit, as ``export`` writes it and ``import`` reads it.

    ``sha256`` is over :func:`canonical_json` of every other field; the canonical
    encoding's length is what the worker's ``max_session_state_bytes`` limits.
    ``programs`` and ``handler_state`` are the worker's business (opaque here).
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int
    session_id: SessionKey
    move_id: str = Field(min_length=1, max_length=64)
    source: str  # the exporting worker's name
    source_incarnation: str
    exported_at: float  # unix seconds, the source's clock
    created_at: float  # unix seconds
    idle_seconds: float = Field(ge=0)  # idle at export: the sliding TTL goes on from here
    ttl_seconds: float  # the source's idle TTL (the target applies its own)
    programs: list[dict[str, Any]]
    handler_state: dict[str, Any]
    # sha256 (hex) of the secret the source reveals only to the target, at commit
    commit_token_sha256: str = Field(min_length=64, max_length=64)
    sha256: str = Field(min_length=64, max_length=64)


def _same_number(value: Any) -> Any:
    """JSON does not tell 300.0 from 300 (a mover in another language may write
    either): an integral float is written as the integer."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _same_number(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_same_number(item) for item in value]
    return value


def canonical_json(value: Any) -> bytes:
    """The one byte encoding of a JSON value that checksums and sizes are over:
    sorted keys, no whitespace, UTF-8, integral numbers as integers, no NaN or
    infinity (``ValueError``)."""
    return json.dumps(
        _same_number(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode()


def envelope_checksum(fields: Mapping[str, Any]) -> str:
    """sha256 (hex) of an envelope's fields other than ``sha256`` itself."""
    body = {key: value for key, value in fields.items() if key != "sha256"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


class MoveInfo(BaseModel):
    """One session's move, as a worker sees it; the answer of every move step."""

    session_id: str
    move_id: str
    state: MoveState
    holder: str | None = None  # moved/committing: the worker that holds it now
    holder_url: str | None = None
    # frozen: until it thaws on its own; pending: until the copy is dropped
    expires_in_seconds: float | None = None
    # An activation's answer: bridgepool.credentials.activation_proof under the
    # pool key the activation came with (the target is a peer, not a stranger).
    proof: str | None = None


class SessionExport(BaseModel):
    """``POST /v1/sessions/{id}/export``: the session is frozen until committed,
    aborted, or ``move.expires_in_seconds`` pass; ``envelope`` goes to ``import``."""

    move: MoveInfo
    size_bytes: int  # of the envelope's canonical encoding
    envelope: SessionEnvelope


class MoveRef(BaseModel):
    """``POST /v1/sessions/{id}/abort``: the move to give up."""

    model_config = ConfigDict(extra="forbid")

    move_id: str = Field(min_length=1, max_length=64)


class CommitRequest(MoveRef):
    """``POST /v1/sessions/{id}/commit`` on the source: the target that imported the
    session, by the base URL this worker can reach it at."""

    holder_url: str = Field(pattern=r"^https?://", max_length=2048)


class ActivateRequest(MoveRef):
    """``POST /v1/sessions/{id}/activate``: the source tells the target, at commit,
    that its copy is now the session. Workers send it to each other."""

    commit_token: str = Field(min_length=1, max_length=256)


class MovesResponse(BaseModel):
    """``GET /v1/moves``: the moves this worker takes part in now, and the
    sessions that moved away from it (kept until it exits)."""

    worker: str
    moves: list[MoveInfo]

"""The move protocol's wire: what movers and workers send each other to move
a session from one worker to another, and the error types they act on.

A mover (the operator or the local supervisor on a drain, or anyone) moves
session S from worker A to worker B in three calls; the steps and their
crash safety are explained in ``bridgepool_worker.moves``, the mover's side
in :mod:`bridgepool.moves.driver`:

    POST A/v1/sessions/S/export                       -> SessionExport (A: frozen)
    POST B/v1/sessions/S/import   body: the envelope  -> MoveInfo (B: pending)
    POST A/v1/sessions/S/commit   CommitRequest       -> MoveInfo (A: moved, B: live)

and POST {A or B}/v1/sessions/S/abort (MoveRef) to give up before the commit.
At the commit, A tells B its copy is now the session:
POST B/v1/sessions/S/activate (ActivateRequest).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bridgepool.errors import BridgePoolError, ErrorCategory
from bridgepool.protocol import SessionKey

# Version of the SessionEnvelope format this code writes and reads.
SESSION_FORMAT_VERSION = 1

# Error types a router or mover acts on (category ``session``):
SESSION_MOVING = "session_moving"  # 503, retryable: the session is frozen for a move
SESSION_MOVED = "session_moved"  # 410: context ``holder`` and ``holder_url`` name its worker
WORKER_RESTARTED = "worker_restarted"  # 412: not the process HEADER_EXPECT_INCARNATION names
# A commit's answer (409) when the source is already committing this move: it
# finishes it by itself.
MOVE_COMMITTING = "move_committing"
# An export's error types (422) that say the session cannot move as it is, not
# "not now": the worker remembers which as the session's SessionInfo.unmovable.
SESSION_TOO_LARGE = "session_too_large"  # its envelope is over the worker's size limit
MOVE_REFUSED = "move_refused"  # a state exporter refused (bridgepool_worker.MoveRefused)
UNSERIALIZABLE_STATE = "unserializable_state"  # some state does not survive JSON
EXPORT_FAILED = "export_failed"  # a state exporter raised
CANNOT_MOVE = frozenset({SESSION_TOO_LARGE, MOVE_REFUSED, UNSERIALIZABLE_STATE, EXPORT_FAILED})


def session_moved_error(
    session_id: str, move_id: str, holder: str | None, holder_url: str | None
) -> BridgePoolError:
    """410 ``session_moved``: a call of a session that left this worker for
    ``holder``, at ``holder_url`` (read back by :func:`moved_to`)."""
    return BridgePoolError.make(
        ErrorCategory.SESSION,
        SESSION_MOVED,
        f"session {session_id!r} moved to worker {holder!r}",
        status=410,
        session_id=session_id,
        holder=holder,
        holder_url=holder_url,
        move_id=move_id,
    )


def moved_to(error: Mapping[str, Any]) -> str | None:
    """The new holder's base URL that an error (its JSON ``error`` object)
    names, if it is a ``session_moved``."""
    if error.get("type") != SESSION_MOVED:
        return None
    context = error.get("context")
    url = context.get("holder_url") if isinstance(context, dict) else None
    return url if isinstance(url, str) and url else None


class MoveState(StrEnum):
    """Where a session stands in a move, on the worker that answers."""

    FROZEN = "frozen"  # source: exported; calls wait, then 503 session_moving
    COMMITTING = "committing"  # source: committed; telling the target to go live
    MOVED = "moved"  # source: state dropped; calls get 410 session_moved
    PENDING = "pending"  # target: imported copy, not live until the source commits
    LIVE = "live"  # the session is served here (source thawed, or target activated)
    DISCARDED = "discarded"  # target: the imported copy was dropped


class KeptAnswer(BaseModel):
    """The answer a session keeps of one call with a call id (``body`` None:
    the call ran, its answer was too large to keep)."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    status: int
    body: str | None


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
    # The answers of the session's last calls that carried a call id, oldest
    # first: a retry of one reaching the new holder gets its answer there.
    answers: list[KeptAnswer] = Field(default_factory=list)
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

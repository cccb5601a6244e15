"""What a worker's answer to a call means for the router: whether the attempt
failed, and how (for the retry decision and the worker's breaker); whether the
session has moved, and to which worker; whether the worker is a new process
that ran nothing, or one that ran the call without the session's state.

Pure: an answer's status and body bytes in, facts out. Sending the call, and
counting its outcome against the worker, is the dispatcher's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bridgepool.errors import ErrorInfo, counts_against_worker
from bridgepool.moves.wire import SESSION_MOVING, WORKER_RESTARTED, moved_to
from bridgepool_router.core.retry import FailureKind

# The worker's error type for "every call slot is taken" (its 503).
WORKER_BUSY = "capacity_exceeded"


@dataclass(frozen=True, slots=True)
class AnswerMeaning:
    """What one attempt came to, as far as the call's next step is concerned."""

    # How the attempt failed; None: the worker did its part (a handler's own
    # failure, 422, and a caller's mistake, 4xx, are answers like any other).
    failure: FailureKind | None = None
    moved_to: str | None = None  # 410 session_moved: the new holder's base URL
    restarted: bool = False  # 412 worker_restarted: a new process, that ran nothing


# The usual answer, shared: it is immutable, and the call path makes one per call.
WENT_THROUGH = AnswerMeaning()
# An attempt with no answer: the worker could not be reached (nothing was sent),
# the call ran out of time, or the connection dropped (the worker may have run it).
UNREACHABLE = AnswerMeaning(FailureKind.CONNECT)
NO_ANSWER_IN_TIME = AnswerMeaning(FailureKind.TIMEOUT)
LOST = AnswerMeaning(FailureKind.LOST)  # the connection broke: no answer came back
SERVER_ERROR = AnswerMeaning(FailureKind.WORKER_ERROR)


def answer_meaning(status: int, body: bytes) -> AnswerMeaning:
    """What a worker's answer (its HTTP status and body) means."""
    if status == 503:
        return AnswerMeaning(_refusal(body))
    if status == 410:
        return AnswerMeaning(moved_to=moved_to(_error(body)))
    if status == 412:
        return AnswerMeaning(restarted=_error_type(body) == WORKER_RESTARTED)
    if status == 504:
        return NO_ANSWER_IN_TIME
    if counts_against_worker(status):
        return SERVER_ERROR
    return WENT_THROUGH


def ran_without_state(answered_by: str | None, known: str | None, *, lost_there: bool) -> bool:
    """Whether a session call's answer came from a new process of its worker,
    one the session's state did not survive: ``answered_by`` (the answer's
    incarnation) is the process this router now knows for the worker
    (``known``, perhaps learned from this very answer), and the session's
    binding to the worker is marked lost (``lost_there``)."""
    return answered_by is not None and answered_by == known and lost_there


def _error(body: bytes) -> dict[str, Any]:
    """The ``error`` object of a worker's answer; empty if it has none."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


def _error_type(body: bytes) -> str | None:
    return _error(body).get("type")


def _refusal(body: bytes) -> FailureKind | None:
    """What a worker's 503 means for a retry: busy, a retryable refusal, or
    (its error body says retryable=false) neither."""
    error = _error(body)
    try:
        info = ErrorInfo.model_validate(error) if error else None
    except ValidationError:
        return FailureKind.REFUSED_BY_WORKER
    if info is None:
        return FailureKind.REFUSED_BY_WORKER
    if info.type == WORKER_BUSY:
        # The worker ran nothing and will take the call again in a moment.
        return FailureKind.BUSY
    if info.type == SESSION_MOVING:
        # The session is frozen while it moves, and the worker held the call
        # for its move wait already: the caller gets the 503, and the worker
        # did its part (a freeze that outlasts the wait is the mover's doing).
        return None
    return FailureKind.REFUSED_BY_WORKER if info.retryable else None

"""What a worker's answer means for the router (core.answers), by tables of cases."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridgepool.errors import BridgePoolError, ErrorCategory, error_body
from bridgepool.moves.wire import SESSION_MOVED, SESSION_MOVING, WORKER_RESTARTED
from bridgepool_router.core.answers import (
    WORKER_BUSY,
    AnswerMeaning,
    answer_meaning,
    ran_without_state,
)
from bridgepool_router.core.retry import FailureKind

HOLDER = "http://10.0.0.7:8080"


def error(type_: str, *, retryable: bool = False, **context: Any) -> bytes:
    """A worker's error answer, as the worker sends it."""
    err = BridgePoolError.make(
        ErrorCategory.RESOURCE, type_, "m", status=500, retryable=retryable, **context
    )
    return json.dumps(error_body(err)).encode()


OK = json.dumps({"id": 1, "success": True, "result": 2, "error": None}).encode()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # the worker did its part: an answer, whatever the handler or caller got wrong
        (200, OK, AnswerMeaning()),
        (422, error("ValueError"), AnswerMeaning()),
        (404, error("session_not_found"), AnswerMeaning()),
        # the worker is in trouble: counted against it
        (500, error("internal"), AnswerMeaning(FailureKind.WORKER_ERROR)),
        (502, b"", AnswerMeaning(FailureKind.WORKER_ERROR)),
        (504, error("call_timeout"), AnswerMeaning(FailureKind.TIMEOUT)),
        # 503: busy (all slots taken) is a wait ...
        (503, error(WORKER_BUSY, retryable=True), AnswerMeaning(FailureKind.BUSY)),
        # ... a session still frozen for a move after the worker's move wait is
        # the answer (503 session_moving), not a retry that waits out the freeze ...
        (503, error(SESSION_MOVING, retryable=True), AnswerMeaning()),
        # ... a retryable refusal (draining, terminating) is a refusal ...
        (503, error("draining", retryable=True), AnswerMeaning(FailureKind.REFUSED_BY_WORKER)),
        # ... and one that says retrying cannot help is an answer
        (503, error("draining", retryable=False), AnswerMeaning()),
        # a 503 without a readable error (a proxy's page, a bad error) is a refusal
        (503, b"", AnswerMeaning(FailureKind.REFUSED_BY_WORKER)),
        (503, b"<html>Service Unavailable</html>", AnswerMeaning(FailureKind.REFUSED_BY_WORKER)),
        (503, b"[1, 2]", AnswerMeaning(FailureKind.REFUSED_BY_WORKER)),
        (503, b'{"error": {"type": "x"}}', AnswerMeaning(FailureKind.REFUSED_BY_WORKER)),
        # 410 session_moved names the new holder
        (410, error(SESSION_MOVED, holder="w2", holder_url=HOLDER), AnswerMeaning(moved_to=HOLDER)),
        # ... only when it is that error, and names a URL
        (410, error("session_gone", holder_url=HOLDER), AnswerMeaning()),
        (410, error(SESSION_MOVED), AnswerMeaning()),
        (410, error(SESSION_MOVED, holder_url=""), AnswerMeaning()),
        (410, error(SESSION_MOVED, holder_url=7), AnswerMeaning()),
        # 412 worker_restarted: a new process, that ran nothing
        (412, error(WORKER_RESTARTED), AnswerMeaning(restarted=True)),
        (412, error("precondition_failed"), AnswerMeaning()),
    ],
)
def test_answer_meaning(status: int, body: bytes, expected: AnswerMeaning) -> None:
    assert answer_meaning(status, body) == expected


@pytest.mark.parametrize(
    ("answered_by", "known", "lost_there", "expected"),
    [
        # the process the router knows now answered, and the session's state is lost there
        ("p2", "p2", True, True),
        # the binding there still holds its state: the process has it
        ("p2", "p2", False, False),
        # an answer without an incarnation (an old worker) proves nothing
        (None, "p2", True, False),
        (None, None, True, False),
        # not the process the router knows for the worker
        ("p1", "p2", True, False),
    ],
)
def test_ran_without_state(
    answered_by: str | None, known: str | None, lost_there: bool, expected: bool
) -> None:
    assert ran_without_state(answered_by, known, lost_there=lost_there) is expected

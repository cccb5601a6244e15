"""What follows an attempt of a call (core.attempts), by tables of cases.

The retry decision is the real one (core.retry.next_attempt) with a fixed
jitter draw of 0.5: retry settings of 3 attempts and a 0.1 s base backoff
make a first retry pause 0.05 s."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from bridgepool.spec import RetrySettings
from bridgepool_router.core.answers import AnswerMeaning
from bridgepool_router.core.attempts import (
    AnswerNow,
    FollowMove,
    GiveUp,
    LookElsewhere,
    Retry,
    SendAgain,
    Step,
    next_step,
    step_in_place,
)
from bridgepool_router.core.retry import FailureKind, NextAttempt, RetryBudget, Tally, next_attempt
from bridgepool_router.core.sessions import Rebound

RETRY = RetrySettings(max_attempts=3, base_backoff_seconds=0.1, max_backoff_seconds=1.0)
HOLDER = "http://10.0.0.7:8080"

OK = AnswerMeaning()
CONNECT = AnswerMeaning(FailureKind.CONNECT)
TIMEOUT = AnswerMeaning(FailureKind.TIMEOUT)
REFUSED = AnswerMeaning(FailureKind.REFUSED_BY_WORKER)
BUSY = AnswerMeaning(FailureKind.BUSY)
WORKER_ERROR = AnswerMeaning(FailureKind.WORKER_ERROR)
MOVED = AnswerMeaning(moved_to=HOLDER)
RESTARTED = AnswerMeaning(restarted=True)


class Call(NamedTuple):
    """The call an attempt was for, and what the retry decision weighs."""

    session: bool = False
    sticky: bool = False  # its session was bound before it, not placed by it
    state_lost: bool = False  # the answer came from a process without the session's state
    idempotent: bool = False
    tally: Tally = Tally()  # spent before this attempt
    budget: int = 1  # retries the pool's budget allows


ANONYMOUS = Call()
PLACED_NOW = Call(session=True)
STICKY = Call(session=True, sticky=True)
STATE_LOST = STICKY._replace(state_lost=True)


class Retries:
    """The retry decision, as the dispatcher asks it, remembering whether it was asked."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self.budget = RetryBudget(
            RetrySettings(min_retries_per_second=call.budget, budget_percent=0)
        )
        self.asked = False

    def __call__(self, failure: FailureKind) -> NextAttempt:
        self.asked = True
        return next_attempt(
            failure,
            self.call.tally,
            settings=RETRY,
            budget=self.budget,
            now=100.0,
            remaining=9.0,
            sticky=self.call.sticky,
            idempotent=self.call.idempotent,
            jitter=lambda: 0.5,
        )


@pytest.mark.parametrize(
    ("answer", "call", "expected"),
    [
        # the attempt went through: its answer is the call's
        (OK, ANONYMOUS, AnswerNow()),
        (OK, STICKY, AnswerNow()),
        # a new process that ran nothing: send again, whatever else holds
        (RESTARTED, STICKY, SendAgain()),
        (RESTARTED, STATE_LOST, SendAgain()),
        (RESTARTED, Call(tally=Tally(2), budget=0), SendAgain()),
        # a new process ran it without the session's state: look for the session
        (OK, STATE_LOST, LookElsewhere(Rebound.WORKER_RESTARTED)),
        (MOVED, STATE_LOST, LookElsewhere(Rebound.WORKER_RESTARTED)),
        # the session moved: follow it
        (MOVED, STICKY, FollowMove(HOLDER)),
        (MOVED, PLACED_NOW, FollowMove(HOLDER)),
        # an anonymous call has no session to follow: the worker's 410 is the answer
        (MOVED, ANONYMOUS, AnswerNow()),
        # a session's worker cannot be reached: look for the session elsewhere ...
        (CONNECT, STICKY, LookElsewhere(Rebound.WORKER_UNREACHABLE)),
        # ... unless this very call placed it there: it is nowhere else, retry elsewhere
        (CONNECT, PLACED_NOW, Retry(FailureKind.CONNECT, 0.05, True, Tally(1))),
        (CONNECT, ANONYMOUS, Retry(FailureKind.CONNECT, 0.05, True, Tally(1))),
        # backoff doubles with the attempts spent; the last one spent: give up
        (CONNECT, Call(tally=Tally(1)), Retry(FailureKind.CONNECT, 0.1, True, Tally(2))),
        (CONNECT, Call(tally=Tally(2)), GiveUp()),
        # the worker may have run it: retried only when the caller says it is idempotent
        (TIMEOUT, ANONYMOUS, GiveUp()),
        (TIMEOUT, Call(idempotent=True), Retry(FailureKind.TIMEOUT, 0.05, True, Tally(1))),
        # ... and never on a sticky call, whose state it may have changed
        (WORKER_ERROR, STICKY._replace(idempotent=True), GiveUp()),
        # a sticky call retries a refusal on its own worker
        (REFUSED, STICKY, Retry(FailureKind.REFUSED_BY_WORKER, 0.05, False, Tally(1))),
        # the retry budget is used up: give up, and say why
        (REFUSED, STICKY._replace(budget=0), GiveUp(budget_denied=True)),
        # busy: a wait on the same worker that spends no attempt (two of three are
        # spent already) and no budget; it pauses as long as the next retry would
        (BUSY, Call(tally=Tally(2), budget=0), Retry(FailureKind.BUSY, 0.1, False, Tally(2, 1))),
    ],
)
def test_next_step(answer: AnswerMeaning, call: Call, expected: Step) -> None:
    retries = Retries(call)
    step = next_step(
        answer,
        session=call.session,
        sticky=call.sticky,
        state_lost=call.state_lost,
        retry=retries,
    )
    assert step == expected
    # Only a failed attempt that counts asks the retry decision: asking may spend budget.
    assert retries.asked is isinstance(expected, Retry | GiveUp)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # a new process ran it, and the session now lives there anew: the answer stands
        (OK, AnswerNow()),
        # ... or it said the session had moved: follow it
        (MOVED, FollowMove(HOLDER)),
        # the session is nowhere else: its unreachable worker is retried, not left
        (CONNECT, Retry(FailureKind.CONNECT, 0.05, False, Tally(1))),
    ],
)
def test_step_once_the_session_is_not_found_elsewhere(
    answer: AnswerMeaning, expected: Step
) -> None:
    retries = Retries(STICKY)
    assert step_in_place(answer, session=True, retry=retries) == expected

"""What follows one attempt of a call, from what the attempt showed: the
call's answer, a retry, or first a detour for the call's session (its worker
restarted, lost the session's state or cannot be reached, or the session
moved). :func:`next_step` decides; the dispatcher's attempt loop executes.

A detour means the attempt does not count: the worker ran nothing (or ran it
without the session's state, on a copy that is then dropped), so the call goes
again, where the session is, without spending an attempt or the retry budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridgepool_router.core.answers import AnswerMeaning
from bridgepool_router.core.retry import FailureKind, NextAttempt, Tally
from bridgepool_router.core.sessions import Rebound


@dataclass(frozen=True, slots=True)
class AnswerNow:
    """The attempt went through: its answer is the call's."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The attempt failed and no retry follows (not safe, the attempts spent,
    or the pool's retry budget used up): its failure is the call's answer."""

    budget_denied: bool = False  # a retry was allowed, but the budget was used up


@dataclass(frozen=True, slots=True)
class SendAgain:
    """Send the call again at once; the session's binding leads the next pick.
    The worker is a new process that ran nothing (412), or the session was
    just found on another worker (after :class:`LookElsewhere`)."""


@dataclass(frozen=True, slots=True)
class FollowMove:
    """The session moved with its state (410): bind it to the worker at
    ``holder_url`` and send the call there. The old holder ran nothing."""

    holder_url: str


@dataclass(frozen=True, slots=True)
class LookElsewhere:
    """Ask the workers whether another one holds the session: its worker ran
    the call without the session's state (``WORKER_RESTARTED``), or could not
    be reached (``WORKER_UNREACHABLE``). Found: :class:`SendAgain`. Not found:
    the session stays, and :func:`step_in_place` decides."""

    why: Rebound


@dataclass(frozen=True, slots=True)
class Retry:
    """Another attempt, after ``pause`` seconds, on another worker if ``elsewhere``."""

    failure: FailureKind  # what the retry is for
    pause: float
    elsewhere: bool
    tally: Tally  # what the call has spent, this attempt included


# The steps once the session's place is settled.
InPlace = AnswerNow | GiveUp | SendAgain | FollowMove | Retry
Step = InPlace | LookElsewhere

# The usual steps, shared: they carry nothing, and the call path takes one per attempt.
ANSWER_NOW = AnswerNow()
SEND_AGAIN = SendAgain()


def next_step(
    answer: AnswerMeaning,
    *,
    session: bool,
    sticky: bool,
    state_lost: bool,
    retry: Callable[[FailureKind], NextAttempt],
) -> Step:
    """What follows an attempt that came to ``answer``.

    ``session``: the call is for a session. ``sticky``: its session was bound
    before this call, not placed by it (so its state may be somewhere).
    ``state_lost``: the answer came from a new process of the session's worker,
    which ran the call without the session's state
    (:func:`~bridgepool_router.core.answers.ran_without_state`). ``retry``: the
    retry decision (:func:`~bridgepool_router.core.retry.next_attempt`), asked
    only for a failed attempt that counts, since asking may spend the budget.
    """
    if answer.restarted:
        return SEND_AGAIN
    if state_lost:
        return LookElsewhere(Rebound.WORKER_RESTARTED)
    if answer.failure is FailureKind.CONNECT and sticky:
        # Nothing reached the worker: it may have exited after a drain handed
        # its sessions over, before discovery said it is gone.
        return LookElsewhere(Rebound.WORKER_UNREACHABLE)
    return step_in_place(answer, session=session, retry=retry)


def step_in_place(
    answer: AnswerMeaning, *, session: bool, retry: Callable[[FailureKind], NextAttempt]
) -> InPlace:
    """What follows an attempt once the session (if any) is known to stay
    where the attempt went: :func:`next_step`'s rules after the look elsewhere."""
    if answer.moved_to is not None and session:
        return FollowMove(answer.moved_to)
    if answer.failure is None:
        return ANSWER_NOW
    decided = retry(answer.failure)
    if not decided.retry:
        return GiveUp(budget_denied=decided.budget_denied)
    return Retry(answer.failure, decided.pause, decided.elsewhere, decided.tally)

"""When a failed call may be tried again, how long to wait, and the retry budget
that keeps retries from storming a struggling pool. :func:`next_attempt` puts
them together: the dispatcher asks it after each failed attempt of a call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from bridgepool import backoff
from bridgepool.spec import RetrySettings


class FailureKind(StrEnum):
    """How an attempt failed, as far as retrying is concerned."""

    # The request never reached a worker (connect refused/timed out): always safe.
    CONNECT = "connect"
    # The worker answered 503 with retryable=true (overloaded, draining,
    # terminating): it did not run the call, so retrying is safe.
    REFUSED_BY_WORKER = "refused_by_worker"
    # The worker's call slots were all taken (503 capacity_exceeded): other
    # routers share it, so this router's count of its calls was not the whole
    # story. The worker is healthy and ran nothing: wait a little and try again,
    # as a queued call would, without spending an attempt or the retry budget.
    BUSY = "busy"
    # The worker may have run the call: only safe if the caller says it is
    # idempotent, or the call has an id the worker answers once (``replayable``).
    TIMEOUT = "timeout"
    # The connection broke after the request was sent: no answer came back.
    LOST = "lost"
    # The worker answered with a server error of its own.
    WORKER_ERROR = "worker_error"


def may_retry(
    kind: FailureKind,
    *,
    attempt: int,
    max_attempts: int,
    sticky: bool,
    idempotent: bool,
    replayable: bool = False,
) -> bool:
    """Whether attempt number ``attempt`` (1-based) may be followed by another.

    Sticky calls are never treated as idempotent: their command may have changed
    the session's state before the failure. A ``replayable`` call (a session
    call with a call id) whose answer did not come back may be tried again on
    its worker: if the first attempt ran, the worker answers the retry with
    that attempt's answer. An answer that came back (a server error) is the
    answer, replayable or not.
    """
    if kind is FailureKind.BUSY:
        return True  # bounded by the call's deadline, like a wait in the queue
    if attempt >= max_attempts:
        return False
    if kind in (FailureKind.CONNECT, FailureKind.REFUSED_BY_WORKER):
        return True
    if replayable and kind in (FailureKind.LOST, FailureKind.TIMEOUT):
        return True  # asked again, the worker answers what the first attempt did
    return idempotent and not sticky


def backoff_seconds(retry: int, settings: RetrySettings, jitter: float) -> float:
    """The shared backoff with the pool's retry settings, fully jittered, before
    retry number ``retry`` (1-based): uniform in [0, min(max, base * 2**(retry-1)));
    ``jitter`` is a draw in [0, 1)."""
    return backoff.backoff_seconds(
        retry,
        base=settings.base_backoff_seconds,
        cap=settings.max_backoff_seconds,
        jitter=jitter,
    )


@dataclass(frozen=True)
class Tally:
    """What a call has spent on attempts so far."""

    attempts: int = 0  # attempts counted against max_attempts (busy answers are not)
    busy_waits: int = 0  # busy answers in a row, each waited for like a queue slot


@dataclass(frozen=True)
class NextAttempt:
    """What follows a failed attempt: another one (after ``pause`` seconds, on
    another worker if ``elsewhere``), or none, and the tally either way."""

    retry: bool
    tally: Tally
    pause: float = 0.0
    # Not sticky to the worker that failed (an anonymous call, or a session
    # placed by this very call): the next attempt goes to another worker.
    elsewhere: bool = False
    budget_denied: bool = False  # a retry was allowed, but the budget was used up


def next_attempt(
    failure: FailureKind,
    tally: Tally,
    *,
    settings: RetrySettings,
    budget: RetryBudget,
    now: float,
    remaining: float,
    sticky: bool,
    idempotent: bool,
    jitter: Callable[[], float],
    replayable: bool = False,
) -> NextAttempt:
    """The decision after an attempt failed with ``failure``. A busy worker's
    refusal is a wait, not an attempt: it spends neither attempts nor budget.
    The pause never runs past the call's ``remaining`` time."""
    busy = failure is FailureKind.BUSY
    spent = Tally(tally.attempts + (0 if busy else 1), tally.busy_waits + 1 if busy else 0)
    if not may_retry(
        failure,
        attempt=spent.attempts,
        max_attempts=settings.max_attempts,
        sticky=sticky,
        idempotent=idempotent,
        replayable=replayable,
    ):
        return NextAttempt(retry=False, tally=spent)
    if not busy and not budget.try_spend(now):
        return NextAttempt(retry=False, tally=spent, budget_denied=True)
    retry_no = max(spent.attempts, spent.busy_waits)
    pause = min(backoff_seconds(retry_no, settings, jitter()), max(remaining, 0.0))
    # A replayable call goes back to the worker that may have run it: only its
    # answer there makes the retry safe.
    elsewhere = not sticky and not busy and not replayable
    return NextAttempt(retry=True, tally=spent, pause=pause, elsewhere=elsewhere)


class RetryBudget:
    """Retries allowed in a sliding window: ``min_retries_per_second`` always, plus
    ``budget_percent`` of the requests started in the window.

    The window is split into buckets, so recording is O(1) at any request rate.
    """

    def __init__(
        self, settings: RetrySettings, *, window_seconds: float = 1.0, buckets: int = 10
    ) -> None:
        self.settings = settings
        self.window_seconds = window_seconds
        self._bucket_seconds = window_seconds / buckets
        self._requests = [0] * buckets
        self._retries = [0] * buckets
        self._epochs = [-1] * buckets

    def _slot(self, now: float) -> int:
        epoch = int(now / self._bucket_seconds)
        slot = epoch % len(self._epochs)
        if self._epochs[slot] != epoch:
            self._epochs[slot] = epoch
            self._requests[slot] = 0
            self._retries[slot] = 0
        return slot

    def _totals(self, now: float) -> tuple[int, int]:
        current = int(now / self._bucket_seconds)
        oldest = current - len(self._epochs) + 1
        requests = retries = 0
        for slot, epoch in enumerate(self._epochs):
            if oldest <= epoch <= current:
                requests += self._requests[slot]
                retries += self._retries[slot]
        return requests, retries

    def record_request(self, now: float) -> None:
        self._requests[self._slot(now)] += 1

    def allowance(self, now: float) -> float:
        requests, _ = self._totals(now)
        return (
            self.settings.min_retries_per_second * self.window_seconds
            + self.settings.budget_percent / 100.0 * requests
        )

    def try_spend(self, now: float) -> bool:
        """Claim one retry; False (and nothing spent) when the budget is used up."""
        slot = self._slot(now)
        _, retries = self._totals(now)
        if retries + 1 > self.allowance(now):
            return False
        self._retries[slot] += 1
        return True

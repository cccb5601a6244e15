"""When a failed call may be tried again, how long to wait, and the retry budget
that keeps retries from storming a struggling pool."""

from __future__ import annotations

from enum import StrEnum

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
    # The worker may have run the call: only safe if the caller says it is idempotent.
    TIMEOUT = "timeout"
    WORKER_ERROR = "worker_error"


def may_retry(
    kind: FailureKind, *, attempt: int, max_attempts: int, sticky: bool, idempotent: bool
) -> bool:
    """Whether attempt number ``attempt`` (1-based) may be followed by another.

    Sticky calls are never treated as idempotent: their command may have changed
    the session's state before the failure.
    """
    if kind is FailureKind.BUSY:
        return True  # bounded by the call's deadline, like a wait in the queue
    if attempt >= max_attempts:
        return False
    if kind in (FailureKind.CONNECT, FailureKind.REFUSED_BY_WORKER):
        return True
    return idempotent and not sticky


def backoff_seconds(retry: int, settings: RetrySettings, jitter: float) -> float:
    """Exponential backoff with full jitter before retry number ``retry`` (1-based):
    uniform in [0, min(max, base * 2**(retry-1))); ``jitter`` is a draw in [0, 1)."""
    cap: float = min(
        settings.max_backoff_seconds, settings.base_backoff_seconds * 2.0 ** (retry - 1)
    )
    return cap * jitter


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

"""The executor seam, one pass over a pool, and the loop that runs passes.

An executor is what turns the planner's words into a platform's: the
Kubernetes operator (workers are pods) or the local supervisor (workers are
processes). It does three things, and this module does the rest the same
way for both:

- ``observe``: what one pass sees of the pool (its spec and revision, its
  last status, its workers);
- ``apply``: carry out a pass's actions, recording each change it makes in
  a :class:`PassResult` as it goes;
- ``visible``: whether what it observes now includes a pass's own changes
  (a cluster's watch caches lag behind the writes; a local executor's view
  does not). The next pass waits for that, so it never plans from a view
  older than its own last actions (the ReplicaSet controller's
  "expectations").

A pass that fails is shown on the pool (Degraded/ReconcileError, one event
per distinct failure) and retried after a backoff; a change to the pool or
its workers (the executor sets ``wakeup``) starts a pass at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from bridgepool.backoff import backoff_seconds
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus

from .planner import Action, CreateWorker, Pool, plan, plan_invalid, unplannable
from .workers import ObservedWorker

# Longest wait between passes over a pool whose passes keep failing.
MAX_FAILURE_DELAY_SECONDS = 60.0
# After a wake-up, how long to gather a burst of changes into one pass.
WAKEUP_GATHER_SECONDS = 0.2

PassOutcome = Literal["success", "invalid", "requeue", "error"]


@dataclass(frozen=True)
class Observed:
    """What one pass sees of a pool."""

    name: str
    generation: int
    status: BridgePoolStatus  # as last written
    # The spec and its revision; None when the spec is invalid (``problem`` says why).
    valid: tuple[BridgePoolSpec, str] | None = None
    problem: str | None = None
    # With an invalid spec: the last valid one and its revision, to heal on.
    last_valid: tuple[BridgePoolSpec, str] | None = None
    workers: Sequence[ObservedWorker] = ()
    # Whether new workers can be made now (on a cluster: not before the
    # pool's keys are written, or a new pod would wait for them unstarted).
    may_create: bool = True

    @property
    def planned_on(self) -> BridgePoolSpec | None:
        """The spec the pass plans on: the pool's, or its last valid one."""
        chosen = self.valid or self.last_valid
        return None if chosen is None else chosen[0]


@dataclass
class PassResult:
    """What a pass changed, so the next one waits until it can see it."""

    created: set[str] = field(default_factory=set)
    drained: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)
    # The version of the pool the pass planned from, when it wrote a new
    # status: the next pass must plan from a newer pool (its own status), or
    # it would repeat the decisions and events of this one.
    status_written_over: str | None = None
    # Sessions moved off draining workers: the next pass may stop them.
    sessions_moved: int = 0

    @property
    def workers_changed(self) -> bool:
        return bool(self.created or self.drained or self.stopped)


class RetrySoon(Exception):
    """A pass met a passing trouble (a conflict, a platform busy for a
    moment): try again after ``delay`` seconds, without counting a failure."""

    def __init__(self, message: str, delay: float = 2.0) -> None:
        super().__init__(message)
        self.delay = delay


class Executor(Protocol):
    """What the loop needs of a platform (see the module's docstring)."""

    @property
    def label(self) -> str:
        """The pool in log lines: ``namespace/name``."""
        ...

    async def observe(self, now: datetime) -> Observed: ...

    def last_seen(self) -> Observed:
        """The pool as last seen, without its workers: what a failed pass
        reports its failure on."""
        ...

    async def apply(
        self, observed: Observed, actions: Sequence[Action], result: PassResult
    ) -> None:
        """Carry out ``actions`` in order, planned from ``observed``."""
        ...

    def visible(self, result: PassResult) -> bool: ...

    def record_pass(self, outcome: PassOutcome, seconds: float) -> None: ...

    def describe_failure(self, err: BaseException) -> str:
        """A failed pass's error as one line for the pool's condition and
        event; the same failure gives the same line."""
        ...


class Stopping(Protocol):
    """Set when the loop should end (kopf's daemon flag, or an event's wrapper)."""

    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[object]: ...


class StopFlag:
    """A :class:`Stopping` of one's own (kopf's daemons bring theirs): set it to
    end the loop between passes."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def set(self) -> None:
        self.event.set()

    async def wait(self) -> bool:
        return await self.event.wait()


def decide(observed: Observed, now: datetime) -> list[Action]:
    """The actions of one pass over what ``observed`` shows."""
    if observed.valid is not None:
        spec, revision = observed.valid
        pool = Pool(observed.name, observed.generation, spec, observed.status, revision)
        actions = plan(pool, observed.workers, now)
    else:
        # The pool keeps healing on its last valid spec while it says this one is invalid.
        actions = plan_invalid(
            observed.name,
            observed.generation,
            observed.status,
            observed.last_valid,
            observed.workers,
            observed.problem or "invalid spec",
            now,
        )
    if observed.may_create:
        return actions
    return [a for a in actions if not isinstance(a, CreateWorker)]


async def run_pass(executor: Executor, result: PassResult, now: datetime) -> PassOutcome:
    """Observe, plan, apply: one pass. What it changed goes into ``result``,
    also when it fails part way."""
    observed = await executor.observe(now)
    await executor.apply(observed, decide(observed, now), result)
    return "success" if observed.valid is not None else "invalid"


async def report_failure(
    executor: Executor, message: str, result: PassResult, log: logging.Logger
) -> None:
    """Show a failed pass on the pool. Best effort: the failure may be the platform itself."""
    seen = executor.last_seen()
    now = datetime.now(UTC)
    actions = unplannable(seen.status, seen.name, seen.generation, "ReconcileError", message, now)
    try:
        await executor.apply(seen, actions, result)
    except Exception as err:  # already failing: say so, and keep the loop going
        log.warning(
            "could not report the failed pass on the pool %s: %s",
            executor.label,
            executor.describe_failure(err),
        )


def failure_delay(interval: float, failures: int) -> float:
    """Seconds before the next pass after ``failures`` failed passes in a row:
    the interval, doubling per failure, at most ``MAX_FAILURE_DELAY_SECONDS``.
    A change of the pool or its workers still wakes the loop at once."""
    # No jitter: one executor retries alone. A failing pool is never passed over
    # more often than a healthy one.
    cap = max(interval, MAX_FAILURE_DELAY_SECONDS)
    return backoff_seconds(failures, base=interval, cap=cap)


async def next_wakeup(wakeup: asyncio.Event, stopped: Stopping, delay: float) -> bool:
    """Wait for a wake-up, the loop being stopped, or ``delay``; whether it
    was a wake-up. Returning on stop lets the loop end between passes rather
    than be cancelled in the middle of one."""
    woken = asyncio.ensure_future(wakeup.wait())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, stopping}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        stopping.cancel()
    return wakeup.is_set() and not stopped


async def settle(
    executor: Executor, result: PassResult, stopped: Stopping, seconds: float, log: logging.Logger
) -> None:
    """Wait until the executor's view shows this pass's changes, so the next
    pass plans from them; or until the loop is stopped (there is no next
    pass then)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if stopped or executor.visible(result):
            return
        await asyncio.sleep(0.05)
    log.warning("the view of %s did not show the last pass's changes in time", executor.label)


Waiter = Callable[[asyncio.Event, Stopping, float], Awaitable[bool]]


@dataclass
class LoopSettings:
    interval_seconds: float
    settle_timeout_seconds: float
    # How the loop waits between passes: a wake-up, a stop, or the delay.
    wait: Waiter = next_wakeup


async def run_passes(
    executor: Executor,
    settings: LoopSettings,
    wakeup: asyncio.Event,
    stopped: Stopping,
    log: logging.Logger,
) -> None:
    """Run passes over one pool until ``stopped``: one at a time, every
    interval and whenever ``wakeup`` is set; at once again after a pass that
    changed workers or moved sessions; spaced out while passes fail."""
    interval = settings.interval_seconds
    failures = 0  # passes failed in a row
    last_failure: str | None = None
    while not stopped:
        wakeup.clear()
        started = time.perf_counter()
        delay = interval
        result = PassResult()
        outcome: PassOutcome = "error"
        try:
            outcome = await run_pass(executor, result, datetime.now(UTC))
            failures, last_failure = 0, None
        except RetrySoon as err:
            outcome = "requeue"
            log.warning(f"pass over {executor.label} will be retried: {err}")
            delay = err.delay
        except Exception as err:
            failures += 1
            delay = failure_delay(interval, failures)
            message = executor.describe_failure(err)
            if message != last_failure:  # the traceback once per failure, not per pass
                log.exception(f"pass over {executor.label} failed")
            else:
                log.warning(
                    f"pass over {executor.label} failed again ({failures} in a row, "
                    f"next in {delay:g} s): {message}"
                )
            last_failure = message
            await report_failure(executor, message, result, log)
        finally:
            executor.record_pass(outcome, time.perf_counter() - started)
        if result.workers_changed or result.status_written_over is not None:
            await settle(executor, result, stopped, settings.settle_timeout_seconds, log)
        if (result.workers_changed or result.sessions_moved) and not failures:
            continue  # plan again at once from the new workers
        if await settings.wait(wakeup, stopped, delay):
            await asyncio.sleep(WAKEUP_GATHER_SECONDS)  # gather a burst of changes into one pass

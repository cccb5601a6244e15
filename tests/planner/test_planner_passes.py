"""The loop that runs passes over an executor: what it tells a user when a
pass fails, how it spaces failing passes, and how it plans again from a view
that shows its own changes.

The executor here is an in-memory platform (workers are entries of a dict,
ready once a pass has seen them), which is what the seam is for: the loop
is the same one the operator and the local supervisor run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import pytest

from bridgepool.spec import BridgePoolSpec, BridgePoolStatus
from bridgepool_planner.passes import (
    LoopSettings,
    Observed,
    PassOutcome,
    PassResult,
    StopFlag,
    Stopping,
    Waiter,
    failure_delay,
    next_wakeup,
    run_passes,
)
from bridgepool_planner.planner import (
    Action,
    CreateWorker,
    DrainWorker,
    StopWorker,
    UpdateStatus,
)
from bridgepool_planner.status import EmitEvent
from bridgepool_planner.workers import ObservedWorker

SPEC = BridgePoolSpec.model_validate(
    {"template": {"spec": {"containers": [{"name": "worker", "image": "i"}]}}, "minReplicas": 2}
)


@dataclass
class MemoryExecutor:
    """A platform in memory. ``failing`` passes raise in observe; the view
    lags one ``visible`` call behind a change, as a watch cache does."""

    stopper: StopFlag
    failing: int = 0
    stop_after: int = 100
    label: str = "default/pool"
    status: BridgePoolStatus = field(default_factory=BridgePoolStatus)
    workers: dict[str, ObservedWorker] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    passes: int = 0
    outcomes: list[PassOutcome] = field(default_factory=list)
    lagging: bool = False
    planned_from: list[int] = field(default_factory=list)

    def last_seen(self) -> Observed:
        return Observed(name="pool", generation=1, status=self.status)

    async def observe(self, now: datetime) -> Observed:
        self.passes += 1
        if self.passes >= self.stop_after:
            self.stopper.set()
        if self.passes <= self.failing:
            raise ValueError("min() arg is an empty sequence")
        self.planned_from.append(len(self.workers))
        return Observed(
            name="pool",
            generation=1,
            status=self.status,
            valid=(SPEC, "r1"),
            workers=list(self.workers.values()),
        )

    async def apply(
        self, observed: Observed, actions: Sequence[Action], result: PassResult
    ) -> None:
        for action in actions:
            if isinstance(action, CreateWorker):
                name = f"w{len(self.workers) + 1}"
                when = datetime.now().astimezone()
                self.workers[name] = ObservedWorker(name, action.revision, when, ready=True)
                result.created.add(name)
                self.lagging = True
            elif isinstance(action, DrainWorker | StopWorker):
                raise AssertionError(f"nothing to drain or stop here: {action}")
            elif isinstance(action, EmitEvent):
                self.events.append((action.type, action.reason, action.message))
            elif isinstance(action, UpdateStatus):
                self.status = action.status

    def visible(self, result: PassResult) -> bool:
        lagged, self.lagging = self.lagging, False
        return not lagged

    def record_pass(self, outcome: PassOutcome, seconds: float) -> None:
        self.outcomes.append(outcome)

    def describe_failure(self, err: BaseException) -> str:
        return f"{type(err).__name__}: {err}"


def quick_wait(waits: list[float]) -> Waiter:
    """The loop's wait between passes, noting the delay it was given and
    waiting a millisecond instead."""

    async def wait(wakeup: asyncio.Event, stopped: Stopping, delay: float) -> bool:
        waits.append(delay)
        return await next_wakeup(wakeup, stopped, 0.001)

    return wait


@pytest.mark.parametrize(
    ("interval", "failures", "delay"),
    [(5, 1, 5), (5, 2, 10), (5, 4, 40), (5, 5, 60), (5, 50, 60), (120, 3, 120)],
)
def test_failing_passes_back_off(interval: float, failures: int, delay: float) -> None:
    assert failure_delay(interval, failures) == delay


async def test_a_failing_pass_shows_on_the_pool_with_one_event_and_one_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every pass fails the same way: the pool says so in a condition and one
    event, the log has the traceback once, and the passes space out."""
    stopper = StopFlag()
    executor = MemoryExecutor(stopper, failing=10, stop_after=4)
    waits: list[float] = []
    settings = LoopSettings(2.0, settle_timeout_seconds=1.0, wait=quick_wait(waits))
    log = logging.getLogger("test.passes")
    with caplog.at_level(logging.INFO):
        await asyncio.wait_for(run_passes(executor, settings, asyncio.Event(), stopper, log), 10)

    assert executor.passes == 4
    message = "ValueError: min() arg is an empty sequence"
    assert executor.events == [("Warning", "ReconcileError", message)]
    degraded = [c for c in executor.status.conditions if c.type == "Degraded"]
    assert [(c.status, c.reason, c.message) for c in degraded] == [
        ("True", "ReconcileError", message)
    ]
    assert executor.status.phase == "Degraded"
    failed = [r for r in caplog.records if r.getMessage().startswith("pass over default/pool")]
    assert len(failed) == 4
    assert [r.exc_info is not None for r in failed] == [True, False, False, False]
    assert waits == [2.0, 4.0, 8.0, 16.0]
    assert executor.outcomes == ["error"] * 4


async def test_a_pass_that_made_workers_is_followed_at_once_from_a_view_that_shows_them() -> None:
    """The first pass creates the pool's two workers; the next pass comes
    without waiting out the interval, and only once the view shows them, so
    it does not create them again."""
    stopper = StopFlag()
    executor = MemoryExecutor(stopper, stop_after=3)
    waits: list[float] = []
    settings = LoopSettings(30.0, settle_timeout_seconds=5.0, wait=quick_wait(waits))
    log = logging.getLogger("test.passes")
    await asyncio.wait_for(run_passes(executor, settings, asyncio.Event(), stopper, log), 10)

    assert executor.planned_from == [0, 2, 2]
    assert sorted(executor.workers) == ["w1", "w2"]
    assert executor.status.desired_replicas == 2
    assert executor.outcomes == ["success"] * 3
    assert waits == [30.0, 30.0]  # none after the pass that made workers

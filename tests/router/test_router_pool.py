"""The pool's bookkeeping in-process, without sockets: a fake clock, no workers
running (nothing is sent)."""

from __future__ import annotations

import logging

import pytest

from bridgepool.names import PoolRef
from bridgepool_router.discovery import PoolSnapshot, WorkerEndpoint
from bridgepool_router.metrics import RouterMetrics
from bridgepool_router.pool import PoolRuntime

DEMO = PoolRef("default", "demo")


async def test_panic_mode_is_logged_once_per_kind_of_pick(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No worker takes new sessions: picks for new sessions panic, picks for
    other calls do not, and calls of both kinds in turn log no flapping."""
    workers = tuple(WorkerEndpoint(f"w{i}", f"http://w{i}") for i in range(2))
    metrics = RouterMetrics()
    pool = PoolRuntime(PoolSnapshot(DEMO, workers), metrics, clock=lambda: 0.0)
    pool.update(PoolSnapshot(DEMO, workers))
    for worker in pool.workers.values():
        worker.accepting_sessions = False
    with caplog.at_level(logging.INFO, logger="bridgepool_router.pool"):
        for _ in range(3):
            for new_session in (True, False):
                worker, _ = await pool.acquire(new_session=new_session, wait_seconds=1)
                pool.release(worker)
        pool.workers["w0"].accepting_sessions = True
        worker, _ = await pool.acquire(new_session=True, wait_seconds=1)
    changes = [
        (r.levelname, r.__dict__["panic"], r.__dict__["pick"])
        for r in caplog.records
        if r.getMessage() == "pool panic mode changed"
    ]
    assert changes == [("WARNING", True, "new_session"), ("INFO", False, "new_session")]
    sent = metrics.registry.get_sample_value(
        "bridgepool_router_panic_calls_total", {"namespace": "default", "pool": "demo"}
    )
    assert sent == 3

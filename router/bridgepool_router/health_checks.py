"""Active health checks: each worker's /readyz, every interval, feeding its
health tracker (:mod:`bridgepool_router.core.health`), its capacity and whether
it takes new sessions. A check that sees a new process token marks the
worker's sessions as having lost their state (see ``PoolRuntime.saw_incarnation``)."""

from __future__ import annotations

import asyncio
import logging

from pydantic import ValidationError

from bridgepool.protocol import Readiness, WorkerState
from bridgepool_router.pool import PoolRuntime, TrackedWorker
from bridgepool_router.upstream import ConnectFailed, Upstream, UpstreamError

log = logging.getLogger(__name__)


class HealthChecks:
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream

    async def check(self, pool: PoolRuntime, worker: TrackedWorker) -> None:
        """One active check of the worker's /readyz, which also reports its capacity."""
        settings = pool.routing.health
        ready = False
        refused = False
        try:
            answer = await self.upstream.request(
                "GET", worker.endpoint.url, "/readyz", timeout=settings.timeout_seconds
            )
            readiness = Readiness.model_validate_json(answer.body)
            pool.saw_incarnation(worker, readiness.incarnation)
            worker.readiness = readiness
            if readiness.state is WorkerState.TERMINATING:
                self.upstream.close_idle(worker.endpoint.url)
            worker.capacity = max(readiness.capacity, 1)
            worker.accepting_sessions = readiness.accepting_sessions
            ready = answer.status == 200 and readiness.ready
            worker.last_error = None if ready else (readiness.reason or readiness.state.value)
        except ConnectFailed as exc:
            refused = True
            worker.last_error = str(exc)
        except (UpstreamError, TimeoutError, ValidationError) as exc:
            worker.last_error = repr(exc)
        was_up = worker.health.up
        if ready:
            worker.health.check_passed()
        elif refused:
            worker.health.mark_down()
        else:
            worker.health.check_failed()
        if worker.health.up != was_up:
            # A worker coming back is good news; only going down needs attention.
            log.log(
                logging.INFO if worker.health.up else logging.WARNING,
                "worker health changed",
                extra={
                    "pool": pool.name,
                    "worker": worker.name,
                    "up": worker.health.up,
                    "reason": worker.last_error,
                },
            )
        # Capacity may have grown, or the worker came up: queued calls may proceed.
        pool.worker_up_changed(worker)

    async def run(self, pool: PoolRuntime, worker: TrackedWorker) -> None:
        """Check the worker every interval until cancelled."""
        while True:
            try:
                await self.check(pool, worker)
            except Exception:  # a bug here must not end the worker's checks
                log.exception("health check failed", extra={"worker": worker.name})
            await asyncio.sleep(pool.routing.health.interval_seconds)

"""The router's pools, kept in step with discovery: the sink discovery backends
feed, starting and stopping each worker's health checks."""

from __future__ import annotations

import asyncio
import logging

from bridgepool.credentials import PoolKeys
from bridgepool.names import PoolRef
from bridgepool_router.core import Clock
from bridgepool_router.discovery import PoolSnapshot
from bridgepool_router.dispatcher import Dispatcher
from bridgepool_router.health_checks import HealthChecks
from bridgepool_router.metrics import RouterMetrics
from bridgepool_router.pool import PoolRuntime, TrackedWorker

log = logging.getLogger(__name__)


class PoolRegistry:
    def __init__(
        self,
        dispatcher: Dispatcher,
        metrics: RouterMetrics,
        clock: Clock,
        worker_keys: PoolKeys | None = None,
    ) -> None:
        self.worker_keys = worker_keys
        self.upstream = dispatcher.upstream
        self.health_checks = HealthChecks(dispatcher.upstream)
        self.metrics = metrics
        self.clock = clock
        self.pools: dict[PoolRef, PoolRuntime] = {}
        self.synced = asyncio.Event()

    def apply(self, snapshot: PoolSnapshot) -> None:
        pool = self.pools.get(snapshot.ref)
        if pool is None:
            pool = PoolRuntime(snapshot, self.metrics, self.clock, self.worker_keys)
            self.pools[snapshot.ref] = pool
        added, removed = pool.update(snapshot)
        for worker in removed:
            self._stop(worker)
        for worker in added:
            worker.health_task = asyncio.create_task(
                self.health_checks.run(pool, worker), name=f"health {worker.name}"
            )
        if added or removed:
            log.info(
                "pool workers changed",
                extra={
                    "pool": pool.name,
                    "added": [w.name for w in added],
                    "removed": [w.name for w in removed],
                    "workers": len(pool.workers),
                },
            )

    def remove_pool(self, ref: PoolRef) -> None:
        pool = self.pools.pop(ref, None)
        if pool is None:
            return
        for worker in pool.workers.values():
            self._stop(worker)
        self.metrics.forget_pool(ref)
        log.info("pool removed", extra={"pool": str(ref)})

    def namespaces_with(self, name: str) -> list[str]:
        """The namespaces that have a pool of this name (for the short form
        /v1/pools/{pool}), sorted."""
        return sorted(ref.namespace for ref in self.pools if ref.name == name)

    async def expire_sessions(self, every_seconds: float = 10.0, batch: int = 1000) -> None:
        """Drop idle session bindings now and then; lookups expire them too, but a
        session never called again would otherwise stay in the table. A batch at
        a time, so a mass expiry does not hold up the calls in flight."""
        while True:
            await asyncio.sleep(every_seconds)
            for pool in list(self.pools.values()):
                dropped = batch
                while dropped == batch:
                    dropped = pool.sessions.expire(self.clock(), limit=batch)
                    await asyncio.sleep(0)  # let calls in flight through between batches

    def mark_synced(self) -> None:
        self.synced.set()

    def _stop(self, worker: TrackedWorker) -> None:
        if worker.health_task is not None:
            worker.health_task.cancel()
        self.upstream.forget(worker.endpoint.url)

    async def close(self) -> None:
        tasks = [
            w.health_task
            for p in self.pools.values()
            for w in p.workers.values()
            if w.health_task is not None
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

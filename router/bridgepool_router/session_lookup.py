"""Where a session lives: the session table first, else the workers, which are
the source of truth (each lists the sessions it holds). The decisions (which
copy to follow, which workers' copies count) are the core's
(:mod:`bridgepool_router.core.sessions`); this module asks and records.

Concurrent questions about one session share one round of asking, so the
concurrent calls of a session agree on one worker.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import quote

from pydantic import ValidationError

from bridgepool.protocol import SessionsResponse
from bridgepool_router.core import Clock
from bridgepool_router.core.breaker import BreakerState
from bridgepool_router.core.sessions import Rebind, SessionCopy, choose_holder
from bridgepool_router.metrics import RouterMetrics
from bridgepool_router.pool import PoolRuntime, TrackedWorker
from bridgepool_router.upstream import Upstream, UpstreamError

log = logging.getLogger(__name__)


class SessionLookup:
    def __init__(self, upstream: Upstream, metrics: RouterMetrics, clock: Clock) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.clock = clock

    async def resolve(self, pool: PoolRuntime, session_id: str, remaining: float) -> str | None:
        """The worker holding the session: from the table, else by asking the workers."""
        bound = pool.sessions.lookup(session_id, self.clock())
        if bound is not None:
            pool.stats.session_lookup("hit")
            return bound
        found, asked = await self._settle(pool, session_id, remaining, None)
        if asked:
            pool.stats.session_lookup("found" if found else "new")
        return None if found is None else found.worker

    async def refind(
        self, pool: PoolRuntime, session_id: str, rebind: Rebind, remaining: float
    ) -> SessionCopy | None:
        """Where the session lives now that its binding broke: the copy another
        router (or this one's concurrent call, or a drain's move) took it to, now
        bound in the table; or None, the binding forgotten: place it afresh."""
        found, _ = await self._settle(pool, session_id, remaining, rebind)
        return found

    async def _settle(
        self, pool: PoolRuntime, session_id: str, remaining: float, rebind: Rebind | None
    ) -> tuple[SessionCopy | None, bool]:
        """Ask the workers and record the answer in the table, once for all the
        concurrent callers; returns (the copy followed, whether this caller did
        the asking)."""

        async def ask() -> SessionCopy | None:
            found = await self.find(pool, session_id, remaining, rebind)
            if found is not None:
                pool.sessions.bind(session_id, found.worker, self.clock())
            elif rebind is not None:
                pool.sessions.forget(session_id, rebind.previous)
            return found

        return await pool.lookups.once(session_id, ask)

    async def find(
        self, pool: PoolRuntime, session_id: str, remaining: float, rebind: Rebind | None = None
    ) -> SessionCopy | None:
        """Ask the workers (concurrently, briefly) whether they hold the session,
        and choose the copy to follow. After a broken binding (``rebind``) the
        workers this router cannot reach are not asked."""
        timeout = min(remaining, pool.routing.health.timeout_seconds)
        keys = pool.keys()

        async def ask(worker: TrackedWorker) -> SessionCopy | None:
            try:
                answer = await self.upstream.request(
                    "GET", worker.endpoint.url, "/v1/sessions", keys=keys, timeout=timeout
                )
                if answer.status != 200:
                    return None
                listing = SessionsResponse.model_validate_json(answer.body)
            except (UpstreamError, TimeoutError, ValidationError):
                return None
            for info in listing.sessions:
                if info.session_id == session_id:
                    return SessionCopy(worker.name, info.last_activity, info.moved_in)
            return None

        unusable: frozenset[str] = frozenset()
        if rebind is not None:
            now = self.clock()
            unusable = rebind.unusable(
                w.name for w in pool.workers.values() if w.breaker.state(now) is BreakerState.OPEN
            )
        asked = [w for w in pool.workers.values() if w.name not in unusable]
        answers = await asyncio.gather(*(ask(w) for w in asked))
        copies = [c for c in answers if c is not None and c.worker in pool.workers]
        last_resort = rebind.last_resort if rebind is not None else None
        holder = choose_holder(copies, unusable=unusable, last_resort=last_resort)
        return next((c for c in copies if c.worker == holder), None)

    async def delete_on(
        self,
        pool: PoolRuntime,
        worker: TrackedWorker,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - passed on to the worker request
    ) -> tuple[int, bytes]:
        """End the session on ``worker``: its answer (status, body). Raises
        UpstreamError and TimeoutError when the worker does not answer."""
        answer = await self.upstream.request(
            "DELETE", worker.endpoint.url, f"/v1/sessions/{quote(session_id, safe='')}",
            keys=pool.keys(), timeout=timeout,
        )  # fmt: skip
        return answer.status, answer.body

    async def drop_copy(
        self,
        pool: PoolRuntime,
        worker: TrackedWorker,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - passed on to the worker request
    ) -> None:
        """Delete a copy of the session that must not live on (a call made it on
        a restarted worker while the session lived elsewhere), so no router
        finds it and follows it. Best effort: a copy left behind expires."""
        status, detail = 0, None
        try:
            status, _ = await self.delete_on(pool, worker, session_id, timeout)
        except (UpstreamError, TimeoutError) as exc:
            detail = repr(exc)
        log.info(
            "stray session copy dropped" if status == 200 else "stray session copy not dropped",
            extra={"pool": pool.name, "worker": worker.name, "status": status, "error": detail},
        )

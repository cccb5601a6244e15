"""A pool at run time: its workers' observed state, its session table, its wait
queue and retry budget. The imperative shell around the core: it keeps state,
reserves and releases worker slots, and wakes queued calls; every decision is
delegated to :mod:`bridgepool_router.core`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bridgepool.credentials import Keys, PoolKeys
from bridgepool.protocol import Readiness
from bridgepool.spec import RoutingSettings
from bridgepool_router import router_errors
from bridgepool_router.core import Clock
from bridgepool_router.core.balancer import (
    WorkerView,
    candidates,
    home,
    least_loaded,
    share_after_busy,
    share_after_success,
)
from bridgepool_router.core.breaker import BREAKER_STATE_VALUE, BreakerState, CircuitBreaker
from bridgepool_router.core.health import HealthTracker
from bridgepool_router.core.retry import RetryBudget
from bridgepool_router.core.sessions import Rebind, SessionCopy, SessionTable
from bridgepool_router.core.wait_queue import Waiter, WaitQueue
from bridgepool_router.discovery import PoolSnapshot, WorkerEndpoint
from bridgepool_router.metrics import PoolMetrics, RouterMetrics
from bridgepool_router.shared_answers import SharedAnswers

log = logging.getLogger(__name__)

# Until a worker's /readyz has told us its capacity, allow one call at a time.
ASSUMED_CAPACITY = 1


class WorkerGone(Exception):
    """The worker a queued sticky call waited for left the pool."""


@dataclass
class TrackedWorker:
    """One worker of a pool as this router tracks it: its endpoint, breaker and
    health, the calls this router has in flight there, and what its /readyz said."""

    endpoint: WorkerEndpoint
    breaker: CircuitBreaker
    health: HealthTracker
    capacity: int = ASSUMED_CAPACITY
    in_flight: int = 0
    accepting_sessions: bool = True
    readiness: Readiness | None = None
    # The worker process's token (HEADER_INCARNATION): a new one means it restarted.
    incarnation: str | None = None
    last_error: str | None = None
    health_task: asyncio.Task[None] | None = field(default=None, repr=False)
    # This router's share of the worker's slots while other routers use it too
    # (None: all of them). It shrinks when the worker says it is busy and grows
    # back as calls go through, so routers that share a worker queue their
    # calls in order instead of racing for its slots.
    share: float | None = None

    @property
    def name(self) -> str:
        return self.endpoint.worker

    @property
    def limit(self) -> int:
        """How many calls this router keeps in flight on the worker."""
        if self.share is None:
            return self.capacity
        return max(1, min(self.capacity, int(self.share)))

    def busy(self) -> None:
        self.share = share_after_busy(float(self.limit if self.share is None else self.share))

    def went_through(self) -> None:
        if self.share is not None:
            self.share = share_after_success(self.share, self.capacity)
            if self.share >= self.capacity:
                self.share = None

    def view(self, now: float, sessions: int) -> WorkerView:
        state = self.breaker.state(now)
        return WorkerView(
            worker=self.name,
            up=self.health.up,
            draining=self.endpoint.draining,
            breaker_admits=self.breaker.admits(now),
            breaker_opened_at=None if state is BreakerState.CLOSED else self.breaker.opened_at,
            accepting_sessions=self.accepting_sessions,
            in_flight=self.in_flight,
            capacity=self.limit,
            sessions=sessions,
        )


class PoolRuntime:
    def __init__(
        self,
        snapshot: PoolSnapshot,
        metrics: RouterMetrics,
        clock: Clock,
        worker_keys: PoolKeys | None = None,
    ) -> None:
        self.ref = snapshot.ref
        self._worker_keys = worker_keys
        # "namespace/name", as errors and logs name the pool
        self.name = str(snapshot.ref)
        self.metrics = metrics
        self.stats: PoolMetrics = metrics.for_pool(snapshot.ref)
        self.clock = clock
        self.routing: RoutingSettings = snapshot.routing
        self.workers: dict[str, TrackedWorker] = {}
        self.sessions = SessionTable(snapshot.sessions.idle_ttl_seconds)
        self.queue = WaitQueue(snapshot.routing.queue.max_length)
        self.budget = RetryBudget(snapshot.routing.retries)
        self._futures: dict[int, asyncio.Future[TrackedWorker]] = {}
        self._rotation = 0
        # The kinds of pick ("new_session", "call") in panic mode at their last
        # pick: no worker was eligible (see core.balancer).
        self.panic: set[str] = set()
        # Session ids being looked up on the workers right now (a session's first
        # call here, or one whose binding broke): its concurrent calls share one
        # lookup, so they agree on one worker (see session_lookup).
        self.lookups: SharedAnswers[SessionCopy | None] = SharedAnswers()
        # Sessions found with their state gone whose first answer saying so (the
        # rebound flag) has not left this router yet. The calls of theirs taken
        # meanwhile were sent before the client could know, and say so too.
        self.rebounds_unanswered: dict[str, Rebind] = {}

    def keys(self) -> Keys | None:
        """The pool's keys, that its workers ask of every caller; None: this
        router has none (its workers must be open)."""
        return None if self._worker_keys is None else self._worker_keys.of(self.ref)

    # -- discovery ---------------------------------------------------------

    def update(self, snapshot: PoolSnapshot) -> tuple[list[TrackedWorker], list[TrackedWorker]]:
        """Apply a new snapshot; returns (added, removed) workers."""
        self.routing = snapshot.routing
        self.sessions.idle_ttl_seconds = snapshot.sessions.idle_ttl_seconds
        self.queue.max_length = snapshot.routing.queue.max_length
        self.budget.settings = snapshot.routing.retries
        wanted = {e.worker: e for e in snapshot.workers}
        added, removed = [], []
        for name in list(self.workers):
            if name not in wanted or wanted[name].url != self.workers[name].endpoint.url:
                removed.append(self.workers.pop(name))
        for name, endpoint in wanted.items():
            worker = self.workers.get(name)
            if worker is None:
                worker = self._new_worker(endpoint)
                self.workers[name] = worker
                added.append(worker)
            else:
                worker.endpoint = endpoint
                worker.breaker.settings = snapshot.routing.circuit_breaker
                worker.health.settings = snapshot.routing.health
        for worker in removed:
            self.metrics.forget_worker(self.ref, worker.name)
            for waiter in self.queue.waiting_for(worker.name):
                self.queue.remove(waiter.ticket)
                fut = self._futures.pop(waiter.ticket, None)
                if fut is not None and not fut.done():
                    fut.set_exception(WorkerGone(worker.name))
        self.wake()
        return added, removed

    def _new_worker(self, endpoint: WorkerEndpoint) -> TrackedWorker:
        pool, name = self.name, endpoint.worker
        labels = self.stats.pool
        gauge = self.metrics.breaker_state.labels(*labels, name)
        gauge.set(0)

        def on_transition(before: BreakerState, to: BreakerState) -> None:
            gauge.set(BREAKER_STATE_VALUE[to])
            self.metrics.breaker_transitions.labels(*labels, to.value).inc()
            log.warning(
                "breaker state changed",
                extra={"pool": pool, "worker": name, "from": before.value, "to": to.value},
            )
            self.wake()

        worker = TrackedWorker(
            endpoint=endpoint,
            breaker=CircuitBreaker(self.routing.circuit_breaker, on_transition),
            health=HealthTracker(self.routing.health, up=endpoint.ready),
        )
        self.metrics.worker_up.labels(*labels, name).set(1 if endpoint.ready else 0)
        # Read when scraped: a call then costs no metric update for it.
        self.stats.in_flight(name).set_function(lambda: worker.in_flight)
        return worker

    def saw_incarnation(self, worker: TrackedWorker, incarnation: str | None) -> None:
        """Note the worker's process token from an answer or a health check. A
        token other than the one seen before means the worker restarted: the
        sessions this router had on it lost their state, and their bindings are
        marked so (see ``SessionTable.mark_lost``); its breaker no longer holds
        the old process's failures against it."""
        if not incarnation or incarnation == worker.incarnation:
            return
        known, worker.incarnation = worker.incarnation, incarnation
        if known is None:
            return
        worker.breaker.worker_restarted()
        lost = self.sessions.mark_lost(worker.name)
        log.warning(
            "worker restarted; its sessions' state is gone",
            extra={"pool": self.name, "worker": worker.name, "sessions": lost},
        )

    def worker_up_changed(self, worker: TrackedWorker) -> None:
        up = 1 if worker.health.up else 0
        self.metrics.worker_up.labels(*self.stats.pool, worker.name).set(up)
        self.wake()

    # -- choosing and reserving workers ------------------------------------

    def views(self) -> list[WorkerView]:
        now = self.clock()
        return [w.view(now, self.sessions.sessions_on(n)) for n, w in self.workers.items()]

    def _pick(
        self, target: str | None, exclude: frozenset[str], new_session: bool
    ) -> tuple[TrackedWorker | None, bool]:
        """(worker with room or None, whether any candidate exists at all)."""
        if target is not None:
            worker = self.workers.get(target)
            if worker is None:
                return None, False
            return (worker if worker.in_flight < worker.limit else None), True
        cands = candidates(
            self.views(),
            new_session=new_session,
            max_ejection_percent=self.routing.circuit_breaker.max_ejection_percent,
            exclude=exclude,
        )
        self._note_panic(cands.panic, "new_session" if new_session else "call")
        if not cands.workers:
            return None, False
        self._rotation += 1
        best = least_loaded(cands.workers, self._rotation)
        if best is None:
            return None, True
        if cands.panic:
            self.stats.panic_calls.inc()  # every worker picked is reserved at once
        return self.workers[best.worker], True

    def home_for(self, session_id: str, exclude: frozenset[str]) -> str | None:
        """Where a new session goes, the same in every router (None: no worker
        can take it)."""
        cands = candidates(
            self.views(),
            new_session=True,
            max_ejection_percent=self.routing.circuit_breaker.max_ejection_percent,
            exclude=exclude,
        )
        chosen = home(session_id, cands.workers)
        return None if chosen is None else chosen.worker

    def _note_panic(self, panic: bool, kind: str) -> None:
        """Log a change, per kind of pick: when no worker takes new sessions, only
        the picks for new sessions panic, and calls in between must not flip it."""
        if panic == (kind in self.panic):
            return
        if panic:
            self.panic.add(kind)
        else:
            self.panic.discard(kind)
        # Entering means every worker looks unfit: worth a warning; leaving is good news.
        log.log(
            logging.WARNING if panic else logging.INFO,
            "pool panic mode changed",
            extra={"pool": self.name, "panic": panic, "pick": kind, "workers": len(self.workers)},
        )

    def _reserve(self, worker: TrackedWorker) -> TrackedWorker:
        worker.in_flight += 1
        worker.breaker.on_dispatch(self.clock())
        return worker

    async def acquire(
        self,
        *,
        target: str | None = None,
        exclude: frozenset[str] = frozenset(),
        new_session: bool = False,
        wait_seconds: float,
        ahead: bool = False,
    ) -> tuple[TrackedWorker, float]:
        """Reserve a slot on a worker (``target``, or the best candidate), waiting in
        the pool's queue if all are busy (``ahead`` of the others: a call a worker
        turned away as busy). Returns the worker and the time waited."""
        worker, any_candidate = self._pick(target, exclude, new_session)
        if worker is not None:
            return self._reserve(worker), 0.0
        if not any_candidate:
            if target is not None:
                raise WorkerGone(target)
            raise router_errors.no_workers(self.name)
        start = self.clock()
        waiter = self.queue.admit(
            target=target, new_session=new_session, exclude=exclude, ahead=ahead
        )
        if waiter is None:
            self.metrics.queue_rejected.labels(*self.stats.pool, "full").inc()
            raise router_errors.queue_full(self.name, self.queue.max_length)
        fut: asyncio.Future[TrackedWorker] = asyncio.get_running_loop().create_future()
        self._futures[waiter.ticket] = fut
        self.stats.queue_depth.set(len(self.queue))
        timeout = min(wait_seconds, self.routing.queue.timeout_seconds)
        try:
            async with asyncio.timeout(timeout):
                worker = await fut
        except TimeoutError:
            self.metrics.queue_rejected.labels(*self.stats.pool, "timeout").inc()
            raise router_errors.queue_timeout(self.name, self.clock() - start) from None
        finally:
            self.queue.remove(waiter.ticket)
            self._futures.pop(waiter.ticket, None)
            self.stats.queue_depth.set(len(self.queue))
            served = fut.done() and not fut.cancelled() and fut.exception() is None
            if served and worker is not fut.result():
                # Served at the moment the wait was abandoned: hand the slot back.
                self.release(fut.result())
        waited = self.clock() - start
        self.stats.queue_wait.observe(waited)
        return worker, waited

    def release(self, worker: TrackedWorker) -> None:
        worker.in_flight -= 1
        self.wake()

    def wake(self) -> None:
        """Serve queued calls, oldest first, while workers have room."""
        if not self._futures:
            return
        chosen: dict[int, TrackedWorker] = {}

        def can_serve(waiter: Waiter) -> bool:
            fut = self._futures.get(waiter.ticket)
            if fut is None or fut.done():
                return False
            worker, _ = self._pick(waiter.target, waiter.exclude, waiter.new_session)
            if worker is None:
                return False
            chosen[waiter.ticket] = worker
            return True

        while (waiter := self.queue.take_first(can_serve)) is not None:
            fut = self._futures.pop(waiter.ticket)
            fut.set_result(self._reserve(chosen[waiter.ticket]))
        self.stats.queue_depth.set(len(self.queue))

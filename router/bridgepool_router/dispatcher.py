"""Sending calls to workers: where a call goes (the session's worker, or the
best one), and the attempt loop: reserve a worker, send, read the answer,
decide the next step, take it. It executes what the core decides: what an
answer means (:mod:`core.answers`), what follows an attempt
(:mod:`core.attempts`, asking :func:`core.retry.next_attempt` whether to
retry), the rebind decision (:mod:`core.sessions`), the worker choice (the pool)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import assert_never

from bridgepool.errors import BridgePoolError
from bridgepool.protocol import (
    HEADER_CALL_ID,
    HEADER_EXPECT_INCARNATION,
    HEADER_TIMEOUT,
    HEADER_WAIT_FOR_SLOT,
)
from bridgepool_router import router_errors
from bridgepool_router.core import Clock
from bridgepool_router.core.answers import (
    LOST,
    NO_ANSWER_IN_TIME,
    UNREACHABLE,
    WENT_THROUGH,
    AnswerMeaning,
    answer_meaning,
    ran_without_state,
)
from bridgepool_router.core.attempts import (
    SEND_AGAIN,
    AnswerNow,
    FollowMove,
    GiveUp,
    InPlace,
    LookElsewhere,
    Retry,
    SendAgain,
    Step,
    next_step,
    step_in_place,
)
from bridgepool_router.core.breaker import BreakerState
from bridgepool_router.core.retry import FailureKind, NextAttempt, Tally, next_attempt
from bridgepool_router.core.sessions import Rebind, Rebound, SessionCopy, check_binding
from bridgepool_router.metrics import RouterMetrics
from bridgepool_router.pool import PoolRuntime, TrackedWorker, WorkerGone
from bridgepool_router.session_lookup import SessionLookup
from bridgepool_router.upstream import ConnectFailed, Upstream, UpstreamError

log = logging.getLogger(__name__)

# A call's first attempt has spent nothing yet.
_NO_ATTEMPTS = Tally()


@dataclass(slots=True)
class CallResult:
    """What the router answers: a worker's answer passed through, or its own error."""

    status: int
    body: bytes
    worker: str | None = None
    rebound_reason: Rebound | None = None
    previous_worker: str | None = None
    error: BridgePoolError | None = None
    upstream_seconds: float = 0.0
    waiting_seconds: float = 0.0  # queue waits and retry backoff
    replayed: bool = False  # the worker answered with an earlier attempt's kept answer


@dataclass(slots=True)
class _Attempt:
    status: int | None = None  # None: no answer
    body: bytes = b""
    meaning: AnswerMeaning = WENT_THROUGH
    error: BridgePoolError | None = None  # the router's own, when there was no answer
    elapsed: float = 0.0
    incarnation: str | None = None  # of the worker process that answered
    replayed: bool = False


@dataclass(slots=True)
class _Call:
    pool: PoolRuntime
    request_id: object
    session_id: str | None
    idempotent: bool
    deadline: float
    timeout: float
    # A session call's id (HEADER_CALL_ID): the worker runs it once, so it may
    # be retried on its worker after a failure that may have run it.
    call_id: str | None = None
    tried: set[str] = field(default_factory=set)  # workers a retry must avoid
    resolved: bool = False  # the session was looked up (table or workers)
    placed_now: bool = False  # this call placed the session afresh
    last_worker: str | None = None  # the worker of the latest attempt
    ahead: bool = False  # a worker turned the last attempt away as busy: wait ahead
    # When the session's worker first named a new holder this router does not know.
    unknown_holder_since: float | None = None

    @property
    def sticky(self) -> bool:
        """Its session was bound before this call, not placed by it: a retry
        stays on the session's worker, and the session's state may be elsewhere."""
        return self.session_id is not None and not self.placed_now


def _error_body(err: BridgePoolError, request_id: object = None) -> bytes:
    return json.dumps(
        {"id": request_id, "success": False, "result": None, "error": err.info.model_dump()}
    ).encode()


def error_result(err: BridgePoolError, request_id: object = None) -> CallResult:
    return CallResult(err.status, _error_body(err, request_id), error=err)


# A call for a moved session whose new holder this router does not know yet
# looks again this often, for at most MOVE_DISCOVERY_SECONDS. A worker hands a
# session only to a peer that proves it holds the pool's key, so such a holder
# is one discovery has not shown yet: it does within a second or two. Past that,
# the call fails (502 unknown_holder) rather than wait out its budget.
MOVE_DISCOVERY_PAUSE = 0.05
MOVE_DISCOVERY_SECONDS = 2.0


class Dispatcher:
    def __init__(
        self,
        upstream: Upstream,
        metrics: RouterMetrics,
        clock: Clock,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.clock = clock
        self.jitter = jitter
        self.sessions = SessionLookup(upstream, metrics, clock)

    # -- one attempt --------------------------------------------------------

    async def _send(
        self, call: _Call, worker: TrackedWorker, payload: bytes, remaining: float
    ) -> _Attempt:
        pool, name = call.pool, worker.name
        start = self.clock()
        attempt = _Attempt()
        headers = {
            "Content-Type": "application/json",
            HEADER_TIMEOUT: f"{remaining:.3f}",
            # This router counts only its own calls: when other routers fill the
            # worker too, the call waits in the worker's line, first come first
            # served, rather than racing them for slots.
            HEADER_WAIT_FOR_SLOT: "true",
        }
        if call.call_id is not None:
            headers[HEADER_CALL_ID] = call.call_id
        if call.session_id is not None and worker.incarnation is not None:
            # Run only on the process this router knows: a restarted one has a
            # fresh copy of the session at most, and the session may live on
            # elsewhere by now.
            headers[HEADER_EXPECT_INCARNATION] = worker.incarnation
        try:
            answer = await self.upstream.request(
                "POST",
                worker.endpoint.url,
                "/v1/execute",
                body=payload,
                headers=headers,
                keys=pool.keys(),
                timeout=remaining,
                connect_timeout=min(remaining, pool.routing.health.timeout_seconds),
            )
            attempt.status, attempt.body = answer.status, answer.body
            attempt.incarnation, attempt.replayed = answer.incarnation, answer.replayed
            pool.saw_incarnation(worker, attempt.incarnation)
        except ConnectFailed as exc:
            attempt.meaning = UNREACHABLE
            attempt.error = router_errors.worker_unreachable(pool.name, name, str(exc))
            if worker.health.mark_down():
                log.warning("worker marked down", extra={"pool": pool.name, "worker": name})
                pool.worker_up_changed(worker)
        except TimeoutError:
            attempt.meaning = NO_ANSWER_IN_TIME
            attempt.error = router_errors.call_timeout(pool.name, call.timeout, name)
        except UpstreamError as exc:
            attempt.meaning = LOST
            attempt.error = router_errors.worker_disconnected(pool.name, name, repr(exc))
        else:
            attempt.meaning = answer_meaning(answer.status, answer.body)
        attempt.elapsed = self.clock() - start
        now = self.clock()
        failure = attempt.meaning.failure
        if failure is None:
            worker.breaker.record_success(now)
            worker.went_through()
        elif failure is FailureKind.BUSY:  # a busy worker is a healthy one
            worker.busy()
        else:
            worker.breaker.record_failure(now)
        return attempt

    # -- the call -----------------------------------------------------------

    async def execute(
        self,
        pool: PoolRuntime,
        payload: bytes,
        request_id: object,
        *,
        session_id: str | None,
        idempotent: bool,
        timeout: float,  # noqa: ASYNC109 - a budget the call spends across attempts
        call_id: str | None = None,
    ) -> CallResult:
        now = self.clock()
        call = _Call(pool, request_id, session_id, idempotent, now + timeout, timeout, call_id)
        pool.budget.record_request(now)
        result = CallResult(0, b"")
        try:
            tally = _NO_ATTEMPTS
            last: _Attempt | None = None  # the latest attempt that counts
            while True:
                remaining = call.deadline - self.clock()
                if remaining <= 0:
                    err = router_errors.call_timeout(pool.name, timeout, call.last_worker)
                    return self._finish(result, err, request_id)
                try:
                    worker, waited = await self._reserve(call, result, remaining)
                except WorkerGone:
                    continue  # nothing was sent; the binding check moves the session
                except BridgePoolError as err:
                    if err.info.type == "queue_timeout" and self.clock() >= call.deadline - 0.001:
                        err = router_errors.call_timeout(pool.name, timeout, call.last_worker)
                    if last is not None and err.info.type == "no_workers":
                        # Nowhere left to retry: report the last failure.
                        return self._answer(call, result, last)
                    return self._finish(result, err, request_id)
                result.waiting_seconds += waited
                try:
                    last = await self._send(call, worker, payload, self._remaining(call))
                finally:
                    pool.release(worker)
                call.last_worker = worker.name
                result.upstream_seconds += last.elapsed

                step = self._next_step(call, worker, last, tally)
                if isinstance(step, LookElsewhere):
                    if await self._look_elsewhere(call, worker, step.why, result):
                        step = SEND_AGAIN
                    else:  # the session stays on this worker
                        step = self._step_in_place(call, last, tally)
                match step:
                    case AnswerNow():
                        return self._answer(call, result, last)
                    case GiveUp(budget_denied=denied):
                        if denied:
                            pool.stats.retry_budget_denied()
                        return self._answer(call, result, last)
                    case SendAgain():
                        # The worker ran nothing (or ran it on a copy now dropped):
                        # the attempt does not count, and the session's binding
                        # leads the next one.
                        last = None
                    case FollowMove(holder_url=holder_url):
                        assert session_id is not None
                        lost = await self._follow_move(call, session_id, holder_url)
                        if lost is not None:
                            return self._finish(result, lost, request_id)
                        last = None  # the old holder ran nothing
                    case Retry():
                        pool.stats.retried(step.failure.value)
                        if step.elsewhere:
                            self._avoid(call, worker)
                        tally = step.tally
                        call.ahead = step.failure is FailureKind.BUSY
                        result.waiting_seconds += step.pause
                        await asyncio.sleep(step.pause)
                    case _:
                        assert_never(step)
        finally:
            if session_id is not None and result.rebound_reason is not None:
                # This answer tells the client its session's state is gone:
                # calls taken from now on are not flagged for that loss.
                pool.rebounds_unanswered.pop(session_id, None)

    # -- what follows an attempt ---------------------------------------------

    def _next_step(self, call: _Call, worker: TrackedWorker, last: _Attempt, tally: Tally) -> Step:
        """What follows ``last`` (:func:`core.attempts.next_step`), from the
        answer, the call and the session's binding."""
        session_id = call.session_id
        state_lost = session_id is not None and ran_without_state(
            last.incarnation,
            worker.incarnation,
            lost_there=call.pool.sessions.lost_on(session_id, worker.name),
        )
        return next_step(
            last.meaning,
            session=session_id is not None,
            sticky=call.sticky,
            state_lost=state_lost,
            retry=partial(self._retry, call, tally),
        )

    def _step_in_place(self, call: _Call, last: _Attempt, tally: Tally) -> InPlace:
        """What follows ``last`` now that the session stays where it went."""
        return step_in_place(
            last.meaning,
            session=call.session_id is not None,
            retry=partial(self._retry, call, tally),
        )

    def _retry(self, call: _Call, tally: Tally, failure: FailureKind) -> NextAttempt:
        """Whether a failed attempt is retried, and how (:func:`core.retry.next_attempt`)."""
        return next_attempt(
            failure,
            tally,
            settings=call.pool.routing.retries,
            budget=call.pool.budget,
            now=self.clock(),
            remaining=call.deadline - self.clock(),
            sticky=call.sticky,
            idempotent=call.idempotent,
            jitter=self.jitter,
            replayable=call.call_id is not None,
        )

    async def _look_elsewhere(
        self, call: _Call, worker: TrackedWorker, why: Rebound, result: CallResult
    ) -> bool:
        """Whether another worker holds the session, now bound there, because
        ``worker`` restarted under it or cannot be reached."""
        if why is Rebound.WORKER_RESTARTED:
            return await self._ran_without_state(call, worker, result)
        assert call.session_id is not None
        return await self._found_elsewhere(call, call.session_id, worker, result)

    async def _found_elsewhere(
        self, call: _Call, session_id: str, worker: TrackedWorker, result: CallResult
    ) -> bool:
        """The session's worker cannot be reached (it exited after a drain
        handed its sessions over, before discovery said it is gone): whether
        another worker holds the session, now bound there. If none does, the
        binding stays: the worker may be back in a moment, the session with it."""
        pool = call.pool
        rebind = Rebind(Rebound.WORKER_UNREACHABLE, worker.name)
        found = await self.sessions.find(pool, session_id, self._remaining(call), rebind)
        if found is None:
            return False
        pool.sessions.bind(session_id, found.worker, self.clock())
        self._rebound_unless_moved(pool, session_id, rebind, found, result)
        return True

    async def _follow_move(
        self, call: _Call, session_id: str, holder_url: str
    ) -> BridgePoolError | None:
        """The session moved to another worker with its state (a drain handed
        it over): bind it there, no rebound. A holder this router has not
        discovered yet is waited for briefly (the old worker keeps naming it);
        one still unknown after MOVE_DISCOVERY_SECONDS fails the call."""
        pool = call.pool
        holder = next((w for w in pool.workers.values() if w.endpoint.url == holder_url), None)
        if holder is not None:
            pool.sessions.bind(session_id, holder.name, self.clock())
            pool.stats.session_lookup("moved")
            return None
        now = self.clock()
        if call.unknown_holder_since is None:
            call.unknown_holder_since = now
        waited = now - call.unknown_holder_since
        if waited >= MOVE_DISCOVERY_SECONDS:
            log.warning(
                "session moved to a worker this router does not know",
                extra={
                    "pool": pool.name,
                    "session_id": session_id,
                    "holder_url": holder_url,
                    "worker": call.last_worker,
                },
            )
            return router_errors.unknown_holder(pool.name, session_id, holder_url, waited)
        await asyncio.sleep(min(MOVE_DISCOVERY_PAUSE, self._remaining(call)))
        return None

    def _remaining(self, call: _Call) -> float:
        return max(call.deadline - self.clock(), 0.001)

    def _answer(self, call: _Call, result: CallResult, last: _Attempt) -> CallResult:
        result.worker = call.last_worker
        failure = last.meaning.failure
        if last.status is not None and failure is not None and last.body:
            # The worker's own error answer is more precise than anything we could add.
            result.status, result.body = last.status, last.body
            return result
        if failure is not None and last.error is not None:
            return self._finish(result, last.error, call.request_id)
        assert last.status is not None
        result.status, result.body, result.replayed = last.status, last.body, last.replayed
        return result

    def _finish(self, result: CallResult, err: BridgePoolError, request_id: object) -> CallResult:
        result.status, result.body, result.error = err.status, _error_body(err, request_id), err
        return result

    def _avoid(self, call: _Call, worker: TrackedWorker) -> None:
        """The next attempt goes elsewhere; a session this call placed there is
        placed afresh."""
        call.tried.add(worker.name)
        if call.placed_now and call.session_id is not None:
            call.pool.sessions.forget(call.session_id)
            call.placed_now = False

    # -- where the call goes ----------------------------------------------------

    async def _reserve(
        self, call: _Call, result: CallResult, remaining: float
    ) -> tuple[TrackedWorker, float]:
        """A slot on the worker this attempt goes to, and the time waited for it."""
        pool = call.pool
        if call.session_id is None:
            return await pool.acquire(
                exclude=frozenset(call.tried), wait_seconds=remaining, ahead=call.ahead
            )
        target = await self._session_worker(call, call.session_id, result, remaining)
        if target is not None:
            return await pool.acquire(target=target, wait_seconds=remaining, ahead=call.ahead)
        return await self._place(call, call.session_id, result, remaining)

    async def _session_worker(
        self, call: _Call, session_id: str, result: CallResult, remaining: float
    ) -> str | None:
        """The worker holding the session, or None: place it afresh. A binding
        that no longer holds (worker gone, restarted or unreachable) is flagged
        as a rebound; the session then follows a copy another router moved it
        to, if the workers know one."""
        pool = call.pool
        if call.resolved:  # a concurrent call may have moved it since: the table says
            bound = pool.sessions.lookup(session_id, self.clock())
        else:
            bound = await self.sessions.resolve(pool, session_id, remaining)
            call.resolved = True
        if bound is None:
            return None
        worker = pool.workers.get(bound)
        rebind = check_binding(
            bound,
            present=worker is not None,
            state_lost=pool.sessions.is_lost(session_id),
            breaker_open=(
                worker is not None and worker.breaker.state(self.clock()) is BreakerState.OPEN
            ),
        )
        if rebind is None:
            unanswered = pool.rebounds_unanswered.get(session_id)
            if unanswered is not None:
                self._flag(result, unanswered)
            return bound
        found = await self.sessions.refind(pool, session_id, rebind, remaining)
        self._rebound_unless_moved(pool, session_id, rebind, found, result)
        return None if found is None else found.worker

    async def _place(
        self, call: _Call, session_id: str, result: CallResult, remaining: float
    ) -> tuple[TrackedWorker, float]:
        """Place the session afresh on the best worker; or, if a concurrent call
        of it placed it while this one waited, join it there."""
        pool = call.pool
        exclude = frozenset(call.tried)
        target = pool.home_for(session_id, exclude)
        worker, waited = await pool.acquire(
            target=target, new_session=True, exclude=exclude, wait_seconds=remaining
        )
        placed = pool.sessions.lookup(session_id, self.clock())
        if placed is not None and placed != worker.name:
            pool.release(worker)
            joined, more = await pool.acquire(target=placed, wait_seconds=self._remaining(call))
            return joined, waited + more
        if placed is None:
            pool.sessions.bind(session_id, worker.name, self.clock())
            call.placed_now = True
            if (
                worker.name == result.previous_worker
                and result.rebound_reason is not Rebound.WORKER_RESTARTED
            ):
                # Panic mode put it back where it was: not a move after all.
                result.rebound_reason = result.previous_worker = None
        return worker, waited

    async def _ran_without_state(
        self, call: _Call, worker: TrackedWorker, result: CallResult
    ) -> bool:
        """After an answer from a new process of the session's worker (it
        restarted, and the session's state went with the old one:
        :func:`core.answers.ran_without_state`): flag the rebound. The session lives on here
        anew, unless another router moved it elsewhere while this one's binding
        was stale; then the copy this call made here is dropped, and True: the
        call runs again there.

        The process check (HEADER_EXPECT_INCARNATION) turns most of these
        into a 412 before anything runs. This remains for what it cannot
        catch: a restart this router learns of while the call waits for its
        slot (the header then names the new process), and a worker too old to
        check the header."""
        pool, session_id = call.pool, call.session_id
        assert session_id is not None
        rebind = Rebind(Rebound.WORKER_RESTARTED, worker.name)
        found = await self.sessions.refind(pool, session_id, rebind, self._remaining(call))
        self._rebound_unless_moved(pool, session_id, rebind, found, result)
        holder = None if found is None else found.worker
        if holder is None or holder == worker.name:
            pool.sessions.bind(session_id, worker.name, self.clock())
            return False
        await self.sessions.drop_copy(pool, worker, session_id, self._remaining(call))
        return True

    def _rebound_unless_moved(
        self,
        pool: PoolRuntime,
        session_id: str,
        rebind: Rebind,
        found: SessionCopy | None,
        result: CallResult,
    ) -> None:
        """Flag the answer, unless the copy followed came to its worker by a
        move: a drain handed the session over with its state, nothing was lost."""
        if found is not None and found.moved_in:
            pool.stats.session_lookup("moved")
            return
        self._rebound(pool, session_id, rebind, result)

    def _rebound(
        self, pool: PoolRuntime, session_id: str, rebind: Rebind, result: CallResult
    ) -> None:
        """Flag the answer: the session's state on ``rebind.previous`` is gone.
        Until an answer saying so has left, the session's other calls say so too."""
        self._flag(result, rebind)
        pool.rebounds_unanswered.setdefault(session_id, rebind)
        pool.stats.session_lookup("rebound")
        log.info(
            "session rebound",
            extra={
                "pool": pool.name,
                "previous_worker": rebind.previous,
                "reason": rebind.reason.value,
            },
        )

    @staticmethod
    def _flag(result: CallResult, rebind: Rebind) -> None:
        if result.previous_worker is None:
            result.previous_worker = rebind.previous
        result.rebound_reason = rebind.reason

    # -- sessions ---------------------------------------------------------------

    async def delete_session(
        self,
        pool: PoolRuntime,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - passed on to the worker request
    ) -> CallResult:
        holder = await self.sessions.resolve(pool, session_id, timeout)
        pool.sessions.forget(session_id)
        worker = pool.workers.get(holder) if holder else None
        if worker is None:
            return error_result(router_errors.session_not_found(pool.name, session_id))
        try:
            status, body = await self.sessions.delete_on(pool, worker, session_id, timeout)
        except (UpstreamError, TimeoutError) as exc:
            err = router_errors.worker_unreachable(pool.name, worker.name, repr(exc))
            result = error_result(err)
            result.worker = worker.name
            return result
        return CallResult(status, body, worker=worker.name)

"""Sending calls to workers: where a call goes (the session's worker, or the
best one), the attempt loop, and what a failed attempt leads to. It executes
what the core decides: the retry decision (:func:`core.retry.next_attempt`),
the worker choice (the pool), and session look-ups."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from pydantic import ValidationError

from bridgepool.errors import BridgePoolError, ErrorInfo, counts_against_worker
from bridgepool.protocol import HEADER_INCARNATION, HEADER_TIMEOUT, SessionsResponse
from bridgepool_router import router_errors
from bridgepool_router.core import Clock
from bridgepool_router.core.breaker import BreakerState
from bridgepool_router.core.retry import FailureKind, Tally, next_attempt
from bridgepool_router.metrics import RouterMetrics
from bridgepool_router.pool import PoolRuntime, TrackedWorker, WorkerGone

log = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json"}

# Why a session moved to another worker (the X-BridgePool-Session-Rebound-Reason
# header). Either way the session starts afresh on its new worker.
REBOUND_WORKER_GONE = "worker_gone"
REBOUND_WORKER_UNREACHABLE = "worker_unreachable"
REBOUND_WORKER_RESTARTED = "worker_restarted"


@dataclass
class CallResult:
    """What the router answers: a worker's answer passed through, or its own error."""

    status: int
    body: bytes
    worker: str | None = None
    rebound_reason: str | None = None
    previous_worker: str | None = None
    error: BridgePoolError | None = None
    upstream_seconds: float = 0.0
    waiting_seconds: float = 0.0  # queue waits and retry backoff


@dataclass
class _Attempt:
    status: int | None = None  # None: no answer
    body: bytes = b""
    failure: FailureKind | None = None
    error: BridgePoolError | None = None
    elapsed: float = 0.0
    restarted: bool = False  # the answer came from a new process of the worker


@dataclass
class _Call:
    pool: PoolRuntime
    request_id: object
    session_id: str | None
    idempotent: bool
    deadline: float
    timeout: float
    tried: set[str] = field(default_factory=set)  # workers a retry must avoid
    resolved: bool = False  # the session was looked up (table or workers)
    placed_now: bool = False  # this call placed the session afresh
    last_worker: str | None = None  # the worker of the latest attempt


def _error_body(err: BridgePoolError, request_id: object = None) -> bytes:
    return json.dumps(
        {"id": request_id, "success": False, "result": None, "error": err.info.model_dump()}
    ).encode()


def error_result(err: BridgePoolError, request_id: object = None) -> CallResult:
    return CallResult(err.status, _error_body(err, request_id), error=err)


# The worker's error type for "every call slot is taken" (its 503).
WORKER_BUSY = "capacity_exceeded"


def _refusal(body: bytes) -> FailureKind | None:
    """What a worker's 503 means for a retry: busy, a retryable refusal, or
    (its error body says retryable=false) neither."""
    try:
        error = json.loads(body).get("error")
        info = ErrorInfo.model_validate(error) if error else None
    except (ValueError, AttributeError, ValidationError):
        return FailureKind.REFUSED_BY_WORKER
    if info is None:
        return FailureKind.REFUSED_BY_WORKER
    if info.type == WORKER_BUSY:
        return FailureKind.BUSY
    return FailureKind.REFUSED_BY_WORKER if info.retryable else None


class Dispatcher:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        metrics: RouterMetrics,
        clock: Clock,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.http = http
        self.metrics = metrics
        self.clock = clock
        self.jitter = jitter

    # -- one attempt --------------------------------------------------------

    async def _send(
        self, call: _Call, worker: TrackedWorker, payload: bytes, remaining: float
    ) -> _Attempt:
        pool, name = call.pool, worker.name
        connect_timeout = min(remaining, pool.routing.health.timeout_seconds)
        timeout = aiohttp.ClientTimeout(total=remaining, sock_connect=connect_timeout)
        headers = {**JSON_HEADERS, HEADER_TIMEOUT: f"{remaining:.3f}"}
        start = self.clock()
        attempt = _Attempt()
        try:
            async with self.http.post(
                worker.endpoint.url + "/v1/execute", data=payload, headers=headers, timeout=timeout
            ) as resp:
                attempt.status = resp.status
                attempt.body = await resp.read()
                attempt.restarted = pool.saw_incarnation(
                    worker, resp.headers.get(HEADER_INCARNATION)
                )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            attempt.failure = FailureKind.CONNECT
            attempt.error = router_errors.worker_unreachable(pool.name, name, str(exc))
            if worker.health.mark_down():
                log.warning("worker marked down", extra={"pool": pool.name, "worker": name})
                pool.worker_up_changed(worker)
        except TimeoutError:
            attempt.failure = FailureKind.TIMEOUT
            attempt.error = router_errors.call_timeout(pool.name, call.timeout, name)
        except aiohttp.ClientError as exc:
            attempt.failure = FailureKind.WORKER_ERROR
            attempt.error = router_errors.worker_disconnected(pool.name, name, repr(exc))
        attempt.elapsed = self.clock() - start
        now = self.clock()
        if attempt.status is not None:
            if attempt.status == 503:
                attempt.failure = _refusal(attempt.body)
            elif attempt.status == 504:
                attempt.failure = FailureKind.TIMEOUT
            elif counts_against_worker(attempt.status):
                attempt.failure = FailureKind.WORKER_ERROR
        if attempt.failure is None:
            worker.breaker.record_success(now)
        elif attempt.failure is not FailureKind.BUSY:  # a busy worker is a healthy one
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
    ) -> CallResult:
        now = self.clock()
        call = _Call(pool, request_id, session_id, idempotent, now + timeout, timeout)
        pool.budget.record_request(now)
        result = CallResult(0, b"")
        tally = Tally()
        last: _Attempt | None = None
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
                    break  # nowhere left to retry: report the last failure
                return self._finish(result, err, request_id)
            result.waiting_seconds += waited
            try:
                last = await self._send(call, worker, payload, self._remaining(call))
            finally:
                pool.release(worker)
            call.last_worker = worker.name
            result.upstream_seconds += last.elapsed
            if last.restarted and session_id is not None and not call.placed_now:
                # The session's worker restarted under it: this call ran without
                # the session's old state. Say so; the session now lives there anew.
                self._rebound(pool, session_id, worker.name, REBOUND_WORKER_RESTARTED, result)
                pool.sessions.bind(session_id, worker.name, self.clock())
            if last.failure is None:
                break
            step = next_attempt(
                last.failure,
                tally,
                settings=pool.routing.retries,
                budget=pool.budget,
                now=self.clock(),
                remaining=call.deadline - self.clock(),
                sticky=session_id is not None and not call.placed_now,
                idempotent=idempotent,
                jitter=self.jitter,
            )
            if step.budget_denied:
                self.metrics.budget_denied.labels(pool.name).inc()
            if not step.retry:
                break
            self.metrics.retries.labels(pool.name, last.failure.value).inc()
            if step.elsewhere:
                self._avoid(call, worker)
            tally = step.tally
            result.waiting_seconds += step.pause
            await asyncio.sleep(step.pause)
        assert last is not None
        return self._answer(call, result, last)

    def _remaining(self, call: _Call) -> float:
        return max(call.deadline - self.clock(), 0.001)

    def _answer(self, call: _Call, result: CallResult, last: _Attempt) -> CallResult:
        result.worker = call.last_worker
        if last.status is not None and last.failure is not None and last.body:
            # The worker's own error answer is more precise than anything we could add.
            result.status, result.body = last.status, last.body
            return result
        if last.failure is not None and last.error is not None:
            return self._finish(result, last.error, call.request_id)
        assert last.status is not None
        result.status, result.body = last.status, last.body
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
            return await pool.acquire(exclude=frozenset(call.tried), wait_seconds=remaining)
        target = await self._session_worker(call, call.session_id, result, remaining)
        if target is not None:
            return await pool.acquire(target=target, wait_seconds=remaining)
        return await self._place(call, call.session_id, result, remaining)

    async def _session_worker(
        self, call: _Call, session_id: str, result: CallResult, remaining: float
    ) -> str | None:
        """The worker holding the session, or None: place it afresh."""
        pool = call.pool
        if call.resolved:  # a concurrent call may have moved it since: the table says
            bound = pool.sessions.lookup(session_id, self.clock())
        else:
            bound = await self.resolve_session(pool, session_id, remaining)
            call.resolved = True
        return self._check_binding(pool, session_id, bound, result)

    async def _place(
        self, call: _Call, session_id: str, result: CallResult, remaining: float
    ) -> tuple[TrackedWorker, float]:
        """Place the session afresh on the best worker."""
        pool = call.pool
        worker, waited = await pool.acquire(
            new_session=True, exclude=frozenset(call.tried), wait_seconds=remaining
        )
        pool.sessions.bind(session_id, worker.name, self.clock())
        call.placed_now = True
        if (
            worker.name == result.previous_worker
            and result.rebound_reason != REBOUND_WORKER_RESTARTED
        ):
            # Panic mode put it back where it was: not a move after all.
            result.rebound_reason = result.previous_worker = None
        return worker, waited

    def _check_binding(
        self, pool: PoolRuntime, session_id: str, bound: str | None, result: CallResult
    ) -> str | None:
        """Keep the session on its worker unless that worker is gone or unreachable
        (breaker open); then forget it, so it is placed afresh and flagged rebound."""
        if bound is None:
            return None
        worker = pool.workers.get(bound)
        if worker is None:
            reason = REBOUND_WORKER_GONE
        elif pool.sessions.is_lost(session_id):
            reason = REBOUND_WORKER_RESTARTED
        elif worker.breaker.state(self.clock()) is BreakerState.OPEN:
            reason = REBOUND_WORKER_UNREACHABLE
        else:
            return bound
        pool.sessions.forget(session_id)
        self._rebound(pool, session_id, bound, reason, result)
        return None

    def _rebound(
        self, pool: PoolRuntime, session_id: str, previous: str, reason: str, result: CallResult
    ) -> None:
        """Flag the answer: the session's state on ``previous`` is gone."""
        if result.previous_worker is None:
            result.previous_worker = previous
        result.rebound_reason = reason
        self.metrics.sessions.labels(pool.name, "rebound").inc()
        log.info(
            "session rebound",
            extra={"pool": pool.name, "previous_worker": previous, "reason": reason},
        )

    # -- sessions -------------------------------------------------------------

    async def resolve_session(
        self, pool: PoolRuntime, session_id: str, remaining: float
    ) -> str | None:
        """The worker holding the session: from the table, else by asking the workers.
        Concurrent look-ups of one session share one round of questions."""
        bound = pool.sessions.lookup(session_id, self.clock())
        if bound is not None:
            pool.stats.session_hits.inc()
            return bound
        pending = pool.lookups.get(session_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        pool.lookups[session_id] = fut
        try:
            holder = await self.find_session(pool, session_id, remaining)
            if holder is not None:
                pool.sessions.bind(session_id, holder, self.clock())
            fut.set_result(holder)
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved; the waiters re-raise it
            raise
        finally:
            del pool.lookups[session_id]
        self.metrics.sessions.labels(pool.name, "found" if holder else "new").inc()
        return holder

    async def find_session(
        self, pool: PoolRuntime, session_id: str, remaining: float
    ) -> str | None:
        """Ask every worker (concurrently, briefly) whether it holds the session.
        If several do (a session moved while its old worker was unreachable), the
        most recently used copy wins."""
        timeout = aiohttp.ClientTimeout(total=min(remaining, pool.routing.health.timeout_seconds))

        async def ask(worker: TrackedWorker) -> tuple[float, str] | None:
            try:
                async with self.http.get(
                    worker.endpoint.url + "/v1/sessions", timeout=timeout
                ) as resp:
                    if resp.status != 200:
                        return None
                    listing = SessionsResponse.model_validate_json(await resp.read())
            except (aiohttp.ClientError, TimeoutError, ValidationError):
                return None
            for info in listing.sessions:
                if info.session_id == session_id:
                    return (info.last_activity, worker.name)
            return None

        answers = await asyncio.gather(*(ask(w) for w in list(pool.workers.values())))
        found = [a for a in answers if a is not None and a[1] in pool.workers]
        return max(found)[1] if found else None

    async def delete_session(
        self,
        pool: PoolRuntime,
        session_id: str,
        timeout: float,  # noqa: ASYNC109 - passed on to the worker request
    ) -> CallResult:
        holder = await self.resolve_session(pool, session_id, timeout)
        pool.sessions.forget(session_id)
        worker = pool.workers.get(holder) if holder else None
        if worker is None:
            return error_result(router_errors.session_not_found(pool.name, session_id))
        try:
            async with self.http.delete(
                f"{worker.endpoint.url}/v1/sessions/{session_id}",
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                return CallResult(resp.status, await resp.read(), worker=worker.name)
        except (aiohttp.ClientError, TimeoutError) as exc:
            err = router_errors.worker_unreachable(pool.name, worker.name, repr(exc))
            result = error_result(err)
            result.worker = worker.name
            return result

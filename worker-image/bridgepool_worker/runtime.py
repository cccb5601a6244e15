"""The worker's moving parts in one place: the command path, sessions,
lifecycle, counters. The HTTP layer (app.py) only parses, calls this, and
writes what it returns; decisions live in the pure modules it calls.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import secrets
import time
from collections import Counter
from typing import Any

from bridgepool.errors import BridgePoolError, ErrorCategory, error_body
from bridgepool.protocol import (
    ExecuteRequest,
    Readiness,
    RecycleStatus,
    SessionsResponse,
    WorkerStats,
)
from bridgepool_worker.config import WorkerConfig
from bridgepool_worker.gate import Gate
from bridgepool_worker.host import Clock
from bridgepool_worker.lifecycle import Lifecycle, RecycleLimits, Transition, recycle_status
from bridgepool_worker.metrics import WorkerMetrics
from bridgepool_worker.mover import SessionMoves
from bridgepool_worker.registry import Command, CommandRegistry
from bridgepool_worker.sdk import CommandContext
from bridgepool_worker.sessions import ANSWER_KEPT_MAX_BYTES, Session, SessionStore
from bridgepool_worker.slots import SlotLine

log = logging.getLogger("bridgepool_worker")


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def error_json(err: BridgePoolError, request_id: Any = None) -> str:
    return json.dumps(error_body(err, request_id))


def answer_not_kept(session_id: str, call_id: str) -> BridgePoolError:
    """A retry of a call that ran, whose answer was too large to keep."""
    return BridgePoolError.make(
        ErrorCategory.SESSION,
        "answer_not_kept",
        f"call {call_id!r} already ran in this session; its answer was larger than "
        f"{ANSWER_KEPT_MAX_BYTES} bytes and was not kept, so it is not run again",
        status=409,
        session_id=session_id,
        call_id=call_id,
    )


class WorkerRuntime:
    def __init__(
        self,
        config: WorkerConfig,
        registry: CommandRegistry,
        metrics: WorkerMetrics,
        *,
        wall: Clock = time.time,
        mono: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.name = config.name
        self.registry = registry
        self.metrics = metrics
        self.wall = wall
        self.mono = mono
        self.started = mono()
        # New at every start: a restarted worker keeps its name, not its sessions.
        self.incarnation = secrets.token_hex(8)
        self.gate = Gate(config)  # who may call: before anything else can fail to start
        self.sessions = SessionStore(config.session_ttl_seconds, config.max_sessions)
        self.lifecycle = Lifecycle(config.capacity, self.started)
        self.limits = RecycleLimits(
            config.max_requests, config.max_age_seconds, config.max_rss_bytes
        )
        self.requests_total = 0
        self.errors_by_category: Counter[str] = Counter()
        self._rss = rss_bytes()
        self._recycle_logged = False
        # Calls running per session, and who waits for a session to have none.
        self._session_calls: Counter[str] = Counter()
        self._idle_waiters: dict[str, asyncio.Event] = {}
        # (session, call id) -> the answer of that call, while it runs.
        self._running_calls: dict[tuple[str, str], asyncio.Future[tuple[int, str]]] = {}
        self.moves = SessionMoves(self)
        # Calls that may wait for a slot (several routers share this worker).
        self.slots = SlotLine(config.capacity, self._give_back_slot)
        metrics.capacity.set(config.capacity)

    # -- lifecycle ---------------------------------------------------------------

    def record(self, transition: Transition | None) -> None:
        """Log a state change with its reason and the time spent in the old state."""
        if transition is None:
            return
        # busy <-> ready flips with every call at capacity 1: debug, not info.
        quiet = {transition.previous.value, transition.state.value} <= {"ready", "busy"}
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "worker state %s -> %s",
            transition.previous.value,
            transition.state.value,
            extra={
                "worker": self.name,
                "from": transition.previous.value,
                "to": transition.state.value,
                "reason": transition.reason,
                "seconds_in_previous": round(transition.seconds_in_previous, 6),
            },
        )
        self.metrics.set_state(transition.state)
        self.metrics.transitions.labels(state=transition.state.value).inc()

    def begin_termination(self, reason: str) -> None:
        self.record(self.lifecycle.begin_termination(self.mono(), reason))
        self.moves.on_terminating()

    def mark_terminated(self, reason: str) -> None:
        self.record(self.lifecycle.mark_terminated(self.mono(), reason))

    def mark_unhealthy(self, seconds: float | None, reason: str) -> None:
        self.record(self.lifecycle.mark_unhealthy(self.mono(), seconds, reason))

    def clear_unhealthy(self) -> None:
        self.record(self.lifecycle.clear_unhealthy(self.mono()))

    async def initialize(self) -> None:
        """Ready only once a ping has gone through the whole command path."""
        ping = ExecuteRequest(id="init", command="ping")
        status, body = await self.execute(ping, self.config.call_timeout_seconds, internal=True)
        if status != 200:
            raise RuntimeError(f"initial self-ping failed with {status}: {body}")
        self.record(self.lifecycle.mark_initialized(self.mono()))

    def sweep(self) -> None:
        """Background housekeeping: expire sessions, re-check timed states."""
        self.moves.expire_due()
        now = self.wall()
        for session in self.sessions.expire(now):
            self.metrics.sessions_closed.labels(reason="expired").inc()
            log.info(
                "session expired",
                extra={"worker": self.name, "session_id": session.session_id},
            )
        self.metrics.sessions.set(len(self.sessions))
        self.record(self.lifecycle.tick(self.mono()))
        self._rss = rss_bytes()
        self.metrics.rss.set(self._rss)
        self.metrics.uptime.set(self.mono() - self.started)
        recycle = self.recycle()
        self.metrics.recycle_due.set(1 if recycle.due else 0)

    # -- views -------------------------------------------------------------------

    def recycle(self) -> RecycleStatus:
        status = recycle_status(
            self.limits, self.requests_total, self.mono() - self.started, self._rss
        )
        if status.due and not self._recycle_logged:
            self._recycle_logged = True
            log.info(
                "recycling limit reached",
                extra={"worker": self.name, "reason": status.reason},
            )
        return status

    def readiness(self) -> Readiness:
        now = self.mono()
        self.record(self.lifecycle.tick(now))
        ready, reason = self.lifecycle.readiness(now)
        return Readiness(
            worker=self.name,
            ready=ready,
            state=self.lifecycle.state,
            reason=reason,
            capacity=self.lifecycle.capacity,
            in_flight=self.lifecycle.in_flight,
            accepting_sessions=self.lifecycle.accepting_sessions,
            recycle=self.recycle(),
            incarnation=self.incarnation,
        )

    def stats(self) -> WorkerStats:
        self.record(self.lifecycle.tick(self.mono()))
        return WorkerStats(
            worker=self.name,
            state=self.lifecycle.state,
            accepting_sessions=self.lifecycle.accepting_sessions,
            in_flight=self.lifecycle.in_flight,
            in_flight_average=round(
                self.lifecycle.load.update(self.lifecycle.in_flight, self.mono()), 4
            ),
            capacity=self.lifecycle.capacity,
            requests_total=self.requests_total,
            errors_total=sum(self.errors_by_category.values()),
            errors_by_category=dict(self.errors_by_category),
            uptime_seconds=self.mono() - self.started,
            memory_rss_bytes=self._rss,
            sessions=self.sessions.live_count(self.wall()),
            max_sessions=self.sessions.max_sessions,
            session_ttl_seconds=self.sessions.ttl_seconds,
            recycle=self.recycle(),
            unmovable_sessions=self.sessions.unmovable_counts(self.wall()),
        )

    def sessions_response(self) -> SessionsResponse:
        return SessionsResponse(worker=self.name, sessions=self.sessions.infos(self.wall()))

    def delete_session(self, session_id: str) -> Session:
        self.moves.check_deletable(session_id)
        session = self.sessions.delete(session_id, self.wall())
        self.metrics.sessions_closed.labels(reason="deleted").inc()
        self.metrics.sessions.set(len(self.sessions))
        return session

    # -- the command path --------------------------------------------------------

    async def execute(
        self,
        request: ExecuteRequest,
        budget_seconds: float,
        *,
        internal: bool = False,
        wait_for_slot: bool = False,
        ran: list[bool] | None = None,
    ) -> tuple[int, str]:
        """Run one call; return the HTTP status and the JSON body.
        ``wait_for_slot``: with every slot taken, wait in line (slots.py) within
        the call's budget instead of answering 503 at once. ``ran`` gets an
        entry once the command's handler is called (the call is not turned away)."""
        started = self.mono()
        command = self.registry.get(request.command)
        label = command.name if command is not None else "unknown"
        try:
            result = await self._run(request, command, budget_seconds, wait_for_slot, ran)
            try:
                body = json.dumps(
                    {"id": request.id, "success": True, "result": result, "error": None}
                )
            except (TypeError, ValueError) as exc:
                raise BridgePoolError.make(
                    ErrorCategory.PYTHON,
                    "unserializable_result",
                    f"command {request.command!r} returned a value JSON cannot encode: {exc}",
                    status=422,
                ) from None
            status = 200
        except BridgePoolError as err:
            status, body = err.status, error_json(err, request.id)
            if not internal:
                self.errors_by_category[err.category.value] += 1
                self.metrics.errors.labels(category=err.category.value).inc()
        if not internal:
            self.requests_total += 1
            self.metrics.observe_call(label, status, self.mono() - started)
        return status, body

    async def execute_once(
        self,
        request: ExecuteRequest,
        budget_seconds: float,
        call_id: str | None,
        *,
        wait_for_slot: bool = False,
    ) -> tuple[int, str, bool]:
        """A call that runs once per ``call_id`` in its session: a retry of a
        call whose command ran here gets that call's answer (kept with the
        session, and moving with it), and a retry of one still running waits
        for its answer. The HTTP status, the body and whether it was replayed.
        Calls without a session or a call id just run."""
        session_id = request.session_id
        if session_id is None or call_id is None:
            status, body = await self.execute(request, budget_seconds, wait_for_slot=wait_for_slot)
            return status, body, False
        session = self.sessions.get(session_id, self.wall())
        if session is not None and call_id in session.answers:
            status, kept = session.answers[call_id]
            self.metrics.replayed_calls.inc()
            if kept is None:
                err = answer_not_kept(session_id, call_id)
                return err.status, error_json(err, request.id), True
            return status, kept, True
        running = self._running_calls.get((session_id, call_id))
        if running is not None:
            status, body = await asyncio.shield(running)
            self.metrics.replayed_calls.inc()
            return status, body, True
        first: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._running_calls[session_id, call_id] = first
        try:
            ran: list[bool] = []
            answer = await self.execute(
                request, budget_seconds, wait_for_slot=wait_for_slot, ran=ran
            )
            session = self.sessions.get(session_id, self.wall())
            if ran and session is not None:
                session.keep_answer(call_id, *answer)
            first.set_result(answer)
            return (*answer, False)
        finally:
            if not first.done():
                first.cancel()
            del self._running_calls[session_id, call_id]

    def new_session_refusal(self, session_id: str, reserved: int = 0) -> BridgePoolError | None:
        """Why a session new here (opened, or moving in) is refused now, if it is.
        ``reserved``: places promised to sessions moving in."""
        if not self.lifecycle.accepting_sessions:
            self.metrics.rejected.labels(reason="terminating").inc()
            return BridgePoolError.make(
                ErrorCategory.SESSION,
                "not_accepting_sessions",
                "this worker is terminating and accepts no new sessions",
                status=503,
                retryable=True,
                session_id=session_id,
            )
        refusal = self.sessions.can_open(session_id, self.wall(), reserved)
        if refusal is not None:
            self.metrics.rejected.labels(reason="session_limit").inc()
        return refusal

    def _admit_session(self, session_id: str) -> Session | None:
        """The existing session, None for a new one that may be opened; or raise."""
        session = self.sessions.get(session_id, self.wall())
        if session is not None:
            return session
        refusal = self.new_session_refusal(session_id, len(self.moves.table.incoming))
        if refusal is not None:
            raise refusal
        return None

    async def wait_session_idle(self, session_id: str, seconds: float) -> bool:
        """Wait until no call of this session runs; False if some still do after
        ``seconds``."""
        if not self._session_calls[session_id]:
            return True
        event = self._idle_waiters.setdefault(session_id, asyncio.Event())
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            return False
        return True

    async def _run(
        self,
        request: ExecuteRequest,
        command: Command | None,
        budget_seconds: float,
        wait_for_slot: bool,
        ran: list[bool] | None = None,
    ) -> Any:
        if command is None:
            raise BridgePoolError.make(
                ErrorCategory.PYTHON,
                "unknown_command",
                f"unknown command {request.command!r}",
                status=404,
                command=request.command,
            )
        session_id = request.session_id
        session, budget_seconds = await self._take_slot(session_id, budget_seconds, wait_for_slot)
        self.metrics.in_flight.set(self.lifecycle.in_flight)
        if session_id is not None:
            self._session_calls[session_id] += 1
        internal_error = False
        # A sync handler that outlives its timeout keeps running in its thread;
        # its call slot is given back only when it really ends.
        still_running: list[asyncio.Future[Any]] = []
        try:
            if session_id is not None and session is None:
                session, _ = self.sessions.open(session_id, self.wall())
                self.metrics.sessions_opened.inc()
                self.metrics.sessions.set(len(self.sessions))
            ctx = CommandContext(
                session_id=session_id,
                state=session.state if session is not None else None,
                args=request.args,
                worker=self.name,
                logger=command.logger,
                timeout_seconds=budget_seconds,
            )
            if ran is not None:
                ran.append(True)
            try:
                return await self._call(command, ctx, request.args, budget_seconds, still_running)
            except BridgePoolError as err:
                injected = bool(err.info.context.get("injected"))
                internal_error = err.status >= 500 and err.status != 504 and not injected
                raise
        finally:
            if session_id is not None:
                self.sessions.touch(session_id, self.wall())
            if still_running:
                still_running[0].add_done_callback(lambda _: self._end_call(False, session_id))
            else:
                self._end_call(internal_error, session_id)

    async def _take_slot(
        self, session_id: str | None, budget_seconds: float, wait_for_slot: bool
    ) -> tuple[Session | None, float]:
        """Take a call slot, admitting the call's session: the session held here,
        or None for one the call may open. Returns it and the budget left."""
        while True:
            if session_id is not None and self.moves.table.holding(session_id) is not None:
                # A moving session's call waits here, holding no call slot.
                waited_from = self.mono()
                await self.moves.wait_until_here(session_id, budget_seconds)
                budget_seconds = self._budget_left(budget_seconds, waited_from)
            session = self._admit_session(session_id) if session_id is not None else None
            admitted, transition = self.lifecycle.try_begin_call(self.mono())
            if admitted:
                self.record(transition)
                return session, budget_seconds
            if not wait_for_slot or self.slots.full:
                raise self._busy()
            waited_from = self.mono()
            self.metrics.calls_waiting_for_slot.inc()
            try:
                handed = await self.slots.wait(budget_seconds)
            finally:
                self.metrics.calls_waiting_for_slot.dec()
            budget_seconds = self._budget_left(budget_seconds, waited_from)
            if not handed:
                raise self._busy()
            # The call holds a slot now. While it waited, its session may have
            # begun to move or the worker to turn new sessions away: look again.
            if session_id is None:
                return None, budget_seconds
            if self.moves.table.holding(session_id) is None:
                try:
                    return self._admit_session(session_id), budget_seconds
                except BridgePoolError:
                    self._give_back_slot()
                    raise
            self._give_back_slot()  # and wait for the move

    def _budget_left(self, budget_seconds: float, since: float) -> float:
        """What is left of a call's budget after waiting since ``since``."""
        return max(0.001, budget_seconds - (self.mono() - since))

    def _busy(self) -> BridgePoolError:
        self.metrics.rejected.labels(reason="capacity").inc()
        return BridgePoolError.make(
            ErrorCategory.RESOURCE,
            "capacity_exceeded",
            f"all {self.lifecycle.capacity} call slots of this worker are in use",
            status=503,
            retryable=True,
            capacity=self.lifecycle.capacity,
        )

    def _give_back_slot(self) -> None:
        """A slot taken for a call that will not run in it after all (its
        session began to move, or was refused, while it waited; or the caller
        went away): on to the call that has waited longest, or free. Unlike a
        call's end, it says nothing about the worker's health."""
        handed_over = self.slots.hand_over()
        self.record(self.lifecycle.free_slot(self.mono(), handed_over=handed_over))
        self.metrics.in_flight.set(self.lifecycle.in_flight)

    def _end_call(self, internal_error: bool, session_id: str | None) -> None:
        """Free a call's slot, or hand it to the call that has waited longest."""
        handed_over = self.slots.hand_over()
        self.record(
            self.lifecycle.end_call(
                self.mono(), internal_error=internal_error, handed_over=handed_over
            )
        )
        self.metrics.in_flight.set(self.lifecycle.in_flight)
        if session_id is not None:
            self._session_calls[session_id] -= 1
            if self._session_calls[session_id] <= 0:
                del self._session_calls[session_id]
                waiter = self._idle_waiters.pop(session_id, None)
                if waiter is not None:
                    waiter.set()

    async def _call(
        self,
        command: Command,
        ctx: CommandContext,
        args: dict[str, Any],
        budget_seconds: float,
        still_running: list[asyncio.Future[Any]],
    ) -> Any:
        deadline = asyncio.timeout(budget_seconds)
        thread_call: asyncio.Future[Any] | None = None
        try:
            async with deadline:
                if command.is_async:
                    return await command.handler(ctx, args)
                # Sync handlers may block, so they run in a thread. A thread cannot
                # be stopped: on timeout the caller gets its 504 on time, and the
                # shield keeps the thread's future so its end can be observed.
                loop = asyncio.get_running_loop()
                thread_call = loop.run_in_executor(
                    None, functools.partial(command.handler, ctx, args)
                )
                return await asyncio.shield(thread_call)
        except TimeoutError as exc:
            if not deadline.expired():  # the handler's own TimeoutError
                raise self._handler_failed(command, exc) from None
            if thread_call is not None and not thread_call.done():
                still_running.append(thread_call)
                # Retrieve its eventual exception so none is reported as unhandled.
                thread_call.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise BridgePoolError.make(
                ErrorCategory.TIMEOUT,
                "call_timeout",
                f"command {command.name!r} did not finish within {budget_seconds:g}s",
                status=504,
                timeout_seconds=budget_seconds,
            ) from None
        except BridgePoolError:
            raise
        except Exception as exc:
            raise self._handler_failed(command, exc) from None

    def _handler_failed(self, command: Command, exc: Exception) -> BridgePoolError:
        if command.builtin:
            log.error(
                "built-in command failed",
                exc_info=exc,
                extra={"worker": self.name, "command": command.name},
            )
            return BridgePoolError.make(
                ErrorCategory.SYSTEM,
                "internal_error",
                f"built-in command {command.name!r} failed: {type(exc).__name__}: {exc}",
                status=500,
            )
        return BridgePoolError.make(
            ErrorCategory.PYTHON,
            type(exc).__name__,
            str(exc) or type(exc).__name__,
            status=422,
            command=command.name,
        )

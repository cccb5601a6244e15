"""The worker's side of moving sessions: runs the steps of :mod:`bridgepool_worker.moves`
on this worker's sessions, holds calls of a moving session back, and, at a
commit, tells the target to activate its copy (the one call a worker makes to
another).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import aiohttp
from pydantic import ValidationError

from bridgepool.backoff import backoff_seconds
from bridgepool.credentials import activation_proof
from bridgepool.errors import BridgePoolError, ErrorCategory, ErrorInfo, validation_problems
from bridgepool.moves.client import MoveClient, StepFailed, session_url
from bridgepool.moves.wire import (
    CANNOT_MOVE,
    SESSION_FORMAT_VERSION,
    SESSION_TOO_LARGE,
    UNSERIALIZABLE_STATE,
    ActivateRequest,
    CommitRequest,
    MoveInfo,
    MoveRef,
    MovesResponse,
    MoveState,
    SessionEnvelope,
    SessionExport,
    canonical_json,
    envelope_checksum,
)
from bridgepool.worker_http import WorkerHttp
from bridgepool_worker.host import SessionHost
from bridgepool_worker.moves import (
    Incoming,
    MoveTable,
    Outgoing,
    session_exists,
    session_moving,
    token_digest,
)
from bridgepool_worker.sessions import Session, session_not_found
from bridgepool_worker.snapshots import (
    export_handler_state,
    export_programs,
    import_handler_state,
    import_programs,
)

log = logging.getLogger("bridgepool_worker.moves")

# The target's answers to an activation that settle a commit as "no": it holds
# no copy of this move, and never will.
DEFINITE_NO = frozenset({"move_not_found", "invalid_commit_token"})
# A sender's JSON may escape what the canonical encoding keeps as UTF-8.
IMPORT_BODY_FACTOR = 4


def session_too_large(session_id: str, size: int, limit: int, *, status: int) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.RESOURCE,
        SESSION_TOO_LARGE,
        f"session {session_id!r} is {size} bytes as JSON, over this worker's limit of {limit} "
        "(BRIDGEPOOL_WORKER_MAX_SESSION_STATE_BYTES)",
        status=status,
        session_id=session_id,
        size_bytes=size,
        limit_bytes=limit,
    )


def _refused_envelope(type_: str, message: str, status: int, **context: Any) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.COMMUNICATION, type_, message, status=status, **context
    )


def parse_envelope(session_id: str, raw: bytes, limit: int) -> SessionEnvelope:
    """An import body, checked in order: JSON, version, checksum, size, fields."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise _refused_envelope("malformed_json", f"body is not valid JSON: {exc}", 400) from None
    if not isinstance(data, dict):
        raise _refused_envelope("invalid_envelope", "body must be a session envelope object", 400)
    version = data.get("format_version")
    if version != SESSION_FORMAT_VERSION:
        raise _refused_envelope(
            "unsupported_format_version",
            f"envelope format_version {version!r} is not one this worker reads "
            f"({SESSION_FORMAT_VERSION})",
            422,
            format_version=version,
            supported=[SESSION_FORMAT_VERSION],
        )
    try:
        intact = envelope_checksum(data) == data.get("sha256")
        size = len(canonical_json(data))
    except ValueError:  # NaN or infinity: never written by an export
        intact, size = False, 0
    if not intact:
        raise _refused_envelope(
            "checksum_mismatch",
            "the envelope's sha256 does not match its contents: changed in transit",
            422,
        )
    if size > limit:
        raise session_too_large(str(data.get("session_id")), size, limit, status=413)
    try:
        envelope = SessionEnvelope.model_validate(data)
    except ValidationError as exc:
        raise _refused_envelope(
            "invalid_envelope", validation_problems(exc, where_none="envelope"), 400
        ) from None
    if envelope.session_id != session_id:
        raise _refused_envelope(
            "session_mismatch",
            f"the envelope is of session {envelope.session_id!r}, not {session_id!r}",
            400,
            session_id=session_id,
        )
    return envelope


class SessionMoves:
    """Moves of this worker's sessions, out and in."""

    def __init__(self, host: SessionHost) -> None:
        self.host = host
        self.config = host.config
        self.table = MoveTable()
        self.http: aiohttp.ClientSession | None = None  # for activations; see start()
        # session id -> set when its move is decided (calls wait on it)
        self._settled: dict[str, asyncio.Event] = {}
        self._commits: dict[str, asyncio.Task[tuple[MoveInfo, ErrorInfo | None]]] = {}

    async def start(self) -> None:
        self.http = aiohttp.ClientSession()

    async def close(self) -> None:
        for task in list(self._commits.values()):
            task.cancel()
        for task in list(self._commits.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.http is not None:
            await self.http.close()

    # -- bookkeeping -------------------------------------------------------------

    def _log(self, level: int, message: str, move: Outgoing | Incoming, **extra: Any) -> None:
        log.log(
            level,
            message,
            extra={
                "worker": self.host.name,
                "session_id": move.session_id,
                "move_id": move.move_id,
                **extra,
            },
        )

    def _hold(self, session_id: str) -> None:
        self._settled[session_id] = asyncio.Event()
        self.host.metrics.sessions_moving.set(self.table.in_progress())

    def _release(self, session_id: str) -> None:
        event = self._settled.pop(session_id, None)
        if event is not None:
            event.set()
        self.host.metrics.sessions_moving.set(self.table.in_progress())
        self.host.metrics.sessions.set(len(self.host.sessions))

    @contextlib.contextmanager
    def _step(self, step: str, session_id: str) -> Iterator[None]:
        """Count and log a refused step, by its error type."""
        try:
            yield
        except BridgePoolError as err:
            self.host.metrics.move_refusals.labels(step=step, reason=err.info.type).inc()
            log.warning(
                "session move refused",
                extra={
                    "worker": self.host.name,
                    "session_id": session_id,
                    "step": step,
                    "reason": err.info.type,
                    "error": err.info.message,
                },
            )
            raise

    def _info(self, move: Outgoing) -> MoveInfo:
        return next(
            i
            for i in self.table.infos(self.host.mono())
            if i.session_id == move.session_id and i.move_id == move.move_id
        )

    def _thaw(self, move: Outgoing, result: str, reason: str) -> None:
        """The session of a move that did not happen is live here again, as it was."""
        session = self.host.sessions.get(move.session_id, self.host.wall())
        if session is not None:
            session.moving = False
            session.last_activity = self.host.wall() - move.idle_at_freeze
        self._release(move.session_id)
        self.host.metrics.moves.labels(result=result).inc()
        self._log(logging.INFO, "session thawed", move, result=result, reason=reason)

    def _drop(self, arrival: Incoming, result: str, reason: str) -> None:
        self._release(arrival.session_id)
        self.host.metrics.moves.labels(result=result).inc()
        self._log(logging.INFO, "session copy dropped", arrival, result=result, reason=reason)

    def expire_due(self) -> None:
        """Thaw frozen sessions whose commit did not come; drop copies whose
        activation did not come."""
        thaw, drop = self.table.due(self.host.mono())
        for move in thaw:
            self.table.unfreeze(move.session_id, move.move_id)
            self._thaw(move, "expired", "no commit within move_freeze_seconds")
        for arrival in drop:
            self.table.discard(arrival.session_id, arrival.move_id)
            self._drop(arrival, "discarded", "no activation within move_pending_seconds")

    def on_terminating(self) -> None:
        """A terminating worker takes no session in: its pending copies go (a
        source committing to it hears no, and keeps its session)."""
        for arrival in list(self.table.incoming.values()):
            self.table.discard(arrival.session_id, arrival.move_id)
            self._drop(arrival, "discarded", "worker terminating")

    def in_progress(self) -> int:
        return self.table.in_progress()

    def moves_response(self) -> MovesResponse:
        self.expire_due()
        return MovesResponse(worker=self.host.name, moves=self.table.infos(self.host.mono()))

    # -- calls of a moving session ---------------------------------------------------

    async def wait_until_here(self, session_id: str, budget_seconds: float) -> None:
        """Return once the session is served here (or new); raise 410
        ``session_moved`` if it left, 503 ``session_moving`` if still moving
        after ``move_wait_seconds``."""
        if self.table.holding(session_id) is None:
            return
        event = self._settled.get(session_id)
        if event is not None:
            waiting = self.host.metrics.calls_waiting_for_moves
            waiting.inc()
            try:
                async with asyncio.timeout(min(self.config.move_wait_seconds, budget_seconds)):
                    await event.wait()
            except TimeoutError:
                pass
            finally:
                waiting.dec()
        self.expire_due()
        move = self.table.holding(session_id)
        if move is not None:
            self.host.metrics.rejected.labels(reason="session_moving").inc()
            raise session_moving(move, self.host.mono())

    def check_deletable(self, session_id: str) -> None:
        move = self.table.holding(session_id)
        if move is not None:
            raise session_moving(move, self.host.mono())

    # -- source: export, commit, abort -------------------------------------------------

    async def export(self, session_id: str) -> SessionExport:
        with self._step("export", session_id):
            return await self._export(session_id)

    async def _export(self, session_id: str) -> SessionExport:
        host = self.host
        self.expire_due()
        session = host.sessions.get(session_id, host.wall())
        if session is None:
            self.table.holding(session_id)  # a session that left: 410 naming its holder
            raise session_not_found(session_id)
        move = self.table.freeze(
            session_id,
            uuid.uuid4().hex,
            secrets.token_hex(32),
            max(0.0, host.wall() - session.last_activity),
        )
        session.moving = True
        self._hold(session_id)
        try:
            if not await host.wait_session_idle(session_id, self.config.move_wait_seconds):
                raise BridgePoolError.make(
                    ErrorCategory.SESSION,
                    "session_busy",
                    f"session {session_id!r} still had calls running after "
                    f"{self.config.move_wait_seconds:g}s; export it between its calls",
                    status=503,
                    retryable=True,
                    session_id=session_id,
                )
            # Idle as of now: a call that was running has just ended.
            move.idle_at_freeze = max(0.0, host.wall() - session.last_activity)
            loop = asyncio.get_running_loop()
            envelope, size = await loop.run_in_executor(None, self._envelope, session, move)
        except BaseException as exc:
            self.table.unfreeze(session_id, move.move_id)
            reason = exc.info.type if isinstance(exc, BridgePoolError) else type(exc).__name__
            if isinstance(exc, BridgePoolError) and reason in CANNOT_MOVE:
                session.unmovable = reason  # until it ends here, or an export succeeds
            self._thaw(move, "export_failed", reason)
            raise
        session.unmovable = None
        self.table.start_clock(move, host.mono(), self.config.move_freeze_seconds)
        host.metrics.sessions_exported.inc()
        host.metrics.session_state_bytes.observe(size)
        self._log(
            logging.INFO,
            "session exported",
            move,
            size_bytes=size,
            programs=len(envelope.programs),
            freeze_seconds=self.config.move_freeze_seconds,
        )
        return SessionExport(move=self._info(move), size_bytes=size, envelope=envelope)

    def _envelope(self, session: Session, move: Outgoing) -> tuple[SessionEnvelope, int]:
        """The session as an envelope (in a thread: hooks and DSPy may take time)."""
        host = self.host
        fields = {
            "format_version": SESSION_FORMAT_VERSION,
            "session_id": session.session_id,
            "move_id": move.move_id,
            "source": host.name,
            "source_incarnation": host.incarnation,
            "exported_at": host.wall(),
            "created_at": session.created_at,
            "idle_seconds": move.idle_at_freeze,
            "ttl_seconds": host.sessions.ttl_seconds,
            "programs": export_programs(session.programs),
            "handler_state": export_handler_state(session.state, host.registry.state_hooks),
            "answers": [
                {"call_id": call_id, "status": status, "body": body}
                for call_id, (status, body) in session.answers.items()
            ],
            "commit_token_sha256": token_digest(move.commit_token),
            "sha256": "0" * 64,
        }
        # The checksum is over what goes on the wire: the model's JSON form.
        wire = SessionEnvelope.model_validate(fields).model_dump(mode="json")
        try:
            wire["sha256"] = envelope_checksum(wire)
            size = len(canonical_json(wire))
        except ValueError as exc:  # NaN or infinity in a program's state
            raise BridgePoolError.make(
                ErrorCategory.PYTHON,
                UNSERIALIZABLE_STATE,
                f"session {session.session_id!r} cannot be written as JSON: {exc}",
                status=422,
                session_id=session.session_id,
            ) from None
        limit = self.config.max_session_state_bytes
        if size > limit:
            raise session_too_large(session.session_id, size, limit, status=422)
        return SessionEnvelope.model_validate(wire), size

    async def commit(self, session_id: str, request: CommitRequest) -> tuple[int, MoveInfo]:
        """200 and ``moved`` once the target holds the session; 202 and
        ``committing`` while its answer is awaited (this worker keeps asking)."""
        with self._step("commit", session_id):
            self.expire_due()
            move = self.table.begin_commit(
                session_id, request.move_id, request.holder_url, self.host.mono()
            )
            if move.state == MoveState.MOVED:
                return 200, self._info(move)
            task = self._commits.get(session_id)
            if task is None:
                self._log(logging.INFO, "session move committed", move, holder_url=move.holder_url)
                task = asyncio.create_task(self._finish_commit(move), name=f"commit-{session_id}")
                self._commits[session_id] = task
                task.add_done_callback(lambda _: self._commits.pop(session_id, None))
            try:
                async with asyncio.timeout(self.config.move_wait_seconds):
                    info, refusal = await asyncio.shield(task)
            except TimeoutError:
                return 202, self._info(move)
            if refusal is not None:
                raise BridgePoolError.make(
                    ErrorCategory.SESSION,
                    "activation_refused",
                    f"{move.holder_url} holds no copy of move {move.move_id!r} "
                    f"({refusal.type}: {refusal.message}); the session stays here",
                    status=409,
                    session_id=session_id,
                    move_id=move.move_id,
                    holder_url=move.holder_url,
                    target_error=refusal.model_dump(mode="json"),
                )
            return 200, info

    async def _finish_commit(self, move: Outgoing) -> tuple[MoveInfo, ErrorInfo | None]:
        """Ask the target to activate until it says yes or a definite no."""
        unanswered = 0  # asks in a row the target has not answered
        while True:
            holder, refusal = await self._ask_to_activate(move)
            if holder is not None:
                self.host.sessions.pop(move.session_id)
                self.table.finish_commit(move, holder)
                self.host.metrics.sessions_closed.labels(reason="moved").inc()
                self.host.metrics.moves.labels(result="moved_out").inc()
                self._release(move.session_id)
                self._log(
                    logging.INFO,
                    "session moved",
                    move,
                    holder=holder,
                    holder_url=move.holder_url,
                )
                return self._info(move), None
            if refusal is not None:
                self.table.unfreeze(move.session_id, move.move_id)
                self._thaw(move, "activation_refused", refusal.type)
                return (
                    MoveInfo(
                        session_id=move.session_id, move_id=move.move_id, state=MoveState.LIVE
                    ),
                    refusal,
                )
            unanswered += 1
            if unanswered == 1:
                self._log(
                    logging.WARNING,
                    "no answer from the move's target yet; asking again",
                    move,
                    holder_url=move.holder_url,
                )
            # No jitter: one worker asks one target about one move.
            await asyncio.sleep(backoff_seconds(unanswered, base=0.05, cap=1.0))

    async def _ask_to_activate(self, move: Outgoing) -> tuple[str | None, ErrorInfo | None]:
        """(holder name, None) on yes; (None, why) on a definite no; (None, None)
        when the answer is unknown. With keys, the target is asked with the
        pool's key (the previous one too, after a 401: it may not have seen a
        rotation yet), and a yes counts only with the proof that the target
        holds the key the request showed: a session goes only to a peer."""
        assert self.http is not None and move.holder_url is not None
        keys = self.host.gate.keys()
        # An open worker (no keys) asks without one, and takes a yes as it comes.
        client = MoveClient(WorkerHttp(self.http, keys), self.config.move_wait_seconds)
        request = ActivateRequest(move_id=move.move_id, commit_token=move.commit_token)
        try:
            activated = await client.activate(move.holder_url, move.session_id, request)
        except StepFailed as err:
            if not err.delivered:
                if move.maybe_delivered:
                    return None, None
                # Nothing reached the target, and its process is not there: no
                # copy of this move can go live there.
                return None, ErrorInfo(
                    category=ErrorCategory.CONNECTION,
                    type="target_unreachable",
                    message=f"cannot connect to {move.holder_url}: {err.__cause__ or err}",
                )
            move.maybe_delivered = True
            if err.error is None:  # no answer, or not a worker's
                return None, None
            if err.status == 401:
                # Refused at its door: it activated nothing, and it is no peer.
                return None, self._not_a_peer(move, err.error.message)
            return None, (err.error if err.error.type in DEFINITE_NO else None)
        move.maybe_delivered = True
        if keys is not None and activated.info.proof != activation_proof(
            activated.sent_key or "", move.session_id, move.move_id
        ):
            return None, self._not_a_peer(move, "its answer does not prove the pool's key")
        holder = activated.info.holder or activated.worker
        return holder or session_url(move.holder_url, move.session_id), None

    def _not_a_peer(self, move: Outgoing, why: str) -> ErrorInfo:
        self._log(
            logging.ERROR,
            "move target is not a worker of this pool: the session stays here",
            move,
            holder_url=move.holder_url,
            why=why,
        )
        return ErrorInfo(
            category=ErrorCategory.SESSION,
            type="target_not_a_peer",
            message=f"{move.holder_url} is not a worker of this pool ({why}): "
            "the session stays here",
            context={"holder_url": move.holder_url},
        )

    def abort(self, session_id: str, request: MoveRef) -> MoveInfo:
        """Before the commit: thaw a frozen session, or drop a pending copy."""
        with self._step("abort", session_id):
            arrival = self.table.incoming.get(session_id)
            if arrival is not None and arrival.move_id == request.move_id:
                self.table.discard(session_id, request.move_id)
                self._drop(arrival, "aborted", "aborted by the mover")
                return MoveInfo(
                    session_id=session_id, move_id=request.move_id, state=MoveState.DISCARDED
                )
            move = self.table.abort_outgoing(session_id, request.move_id)
            self._thaw(move, "aborted", "aborted by the mover")
            return MoveInfo(session_id=session_id, move_id=request.move_id, state=MoveState.LIVE)

    # -- target: import, activate -------------------------------------------------------

    def _check_arrival(self, envelope: SessionEnvelope) -> bool:
        """Raise why this session cannot arrive; True if this move's copy is here."""
        session_id = envelope.session_id
        if self.table.check_arrival(session_id, envelope.move_id):
            return True
        self.check_room(session_id)
        return False

    def check_room(self, session_id: str) -> None:
        """Refuse a session moving in that lives here already, or for which
        there is no room (``max_sessions``, places promised to other arrivals
        counted). An import asks before it reads its body, and again once
        the envelope is read."""
        host = self.host
        if session_id in self.table.incoming:
            return  # the same move asked again, or another one: the envelope decides
        if host.sessions.get(session_id, host.wall()) is not None:
            raise session_exists(session_id)
        refusal = host.new_session_refusal(session_id, reserved=len(self.table.incoming))
        if refusal is not None:
            raise refusal

    async def import_(self, session_id: str, raw: bytes) -> MoveInfo:
        with self._step("import", session_id):
            return await self._import(session_id, raw)

    async def _import(self, session_id: str, raw: bytes) -> MoveInfo:
        host = self.host
        self.expire_due()
        envelope = parse_envelope(session_id, raw, self.config.max_session_state_bytes)
        if not self._check_arrival(envelope):
            loop = asyncio.get_running_loop()
            session = await loop.run_in_executor(None, self._rebuild, envelope)
            # Checked again: another import may have come in while this one rebuilt.
            if not self._check_arrival(envelope):
                arrival = Incoming(
                    session_id,
                    envelope.move_id,
                    envelope.commit_token_sha256,
                    session,
                    envelope.idle_seconds,
                    host.mono() + self.config.move_pending_seconds,
                )
                self.table.add_incoming(arrival)
                self._hold(session_id)
                host.metrics.sessions_imported.inc()
                self._log(
                    logging.INFO,
                    "session imported, pending its commit",
                    arrival,
                    source=envelope.source,
                    programs=len(envelope.programs),
                    pending_seconds=self.config.move_pending_seconds,
                )
        pending = self.table.incoming[session_id]
        return MoveInfo(
            session_id=session_id,
            move_id=pending.move_id,
            state=MoveState.PENDING,
            expires_in_seconds=round(max(0.0, pending.deadline - host.mono()), 3),
        )

    def _rebuild(self, envelope: SessionEnvelope) -> Session:
        """The session from its envelope (in a thread: importers and DSPy)."""
        hooks = self.host.registry.state_hooks
        return Session(
            session_id=envelope.session_id,
            created_at=envelope.created_at,
            last_activity=self.host.wall() - envelope.idle_seconds,
            state=import_handler_state(envelope.handler_state, hooks),
            programs=import_programs(envelope.programs),
            answers=OrderedDict((a.call_id, (a.status, a.body)) for a in envelope.answers),
        )

    def activate(
        self, session_id: str, request: ActivateRequest, caller_key: str | None
    ) -> MoveInfo:
        """The source's word, at its commit: the pending copy is the session now.
        ``caller_key``: the pool key the source sent, which the answer proves
        this worker holds (None on an open worker)."""
        with self._step("activate", session_id):
            arrival = self.table.activate(session_id, request.move_id, request.commit_token)
            if arrival is not None:
                session = arrival.session
                session.last_activity = self.host.wall() - arrival.idle_seconds
                session.moved_in = True
                self.host.sessions.adopt(session)
                self.host.metrics.moves.labels(result="moved_in").inc()
                self._release(session_id)
                self._log(logging.INFO, "session activated: it lives here now", arrival)
            # None: this move brought it here already (the source asks again when
            # an answer was lost). Yes again, even if it has ended since: it did move.
            return MoveInfo(
                session_id=session_id,
                move_id=request.move_id,
                state=MoveState.LIVE,
                holder=self.host.name,
                proof=None
                if caller_key is None
                else activation_proof(caller_key, session_id, request.move_id),
            )

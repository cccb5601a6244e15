"""Moving a session to another worker: the steps, the states, and why no step
leaves a session live in two places or loses it. Pure, with time passed in;
the worker's shell (:mod:`bridgepool_worker.mover`) runs the steps.

The steps (a mover calls three; the third makes the workers talk)::

    mover ── export ──▶ A   S frozen on A: the lock, one move at a time; A keeps S
    mover ── import ──▶ B   B checks and rebuilds S as a pending copy: not live
    mover ── commit ──▶ A   the decision: A stops serving S for good, then
                 A ── activate ──▶ B   with the commit token: B's copy is S now
                 A drops S, keeps a tombstone naming B (410 session_moved)

- **export** (source A): freezes S, waits for S's calls in flight, and writes
  its state as a :class:`~bridgepool.moves.wire.SessionEnvelope` (versioned,
  size-limited, sha256 over a canonical encoding). New calls of S wait up to
  ``move_wait_seconds``, then get a retryable 503 ``session_moving``. A second
  export of S is refused (``move_in_progress``). Unless committed, the freeze
  ends by itself after ``move_freeze_seconds``: S is live on A again, as it was.
  An export that fails for good (:data:`~bridgepool.moves.wire.CANNOT_MOVE`:
  too large, refused by a state hook, ...) marks S *unmovable* with that
  reason, in ``GET /v1/sessions`` and ``/v1/stats``, until an export of S
  succeeds or S ends here: a mover asks the worker, not its own memory.
- **import** (target B): checks version, checksum and size, refuses an S that
  lives or is arriving here, and rebuilds S (programs, state hooks) as a
  *pending* copy. It is not listed and not served (calls wait, then 503
  ``session_moving``), and it is dropped after ``move_pending_seconds``
  unless activated.
- **commit** (source A, given B's URL): S stops thawing (``committing``), and A
  tells B to ``activate`` its copy, sending the *commit token*: a secret A
  made at export, whose sha256 is in the envelope, and which A sends nowhere
  else. On B's yes A drops S and keeps a tombstone until it exits: calls of S
  get 410 ``session_moved`` naming B. On B's definite no (it has no pending
  copy of this move: dropped, aborted, never imported) A thaws S; so it does
  when B refuses the connection before any activation could have reached it
  (B's process is gone, and its copy with it). Without an answer (B slow, or
  gone after an activation was sent) A keeps S frozen and asks again until B
  answers; the commit call answers 202 ``committing`` meanwhile.
- **abort**, before the commit: on A it thaws S; on B it drops the copy.

Why this holds:

- *Live in one place.* B's copy goes live only with the token, which A sends
  only once it has stopped serving S for good (``committing`` never thaws on
  its own). A serves S again only while B cannot go live: before the commit
  (B has no token), or once B cannot hold it: B answered that it holds no
  copy of this move (so it never will: A sends the token only while
  committing, and a move id is never reused), or B's process is gone and no
  activation can have reached it.
- *Nothing lost.* A keeps S's state until B has confirmed it holds it. The
  mover may stop after any step: after the export, A thaws at its deadline;
  after the import too, and B drops its copy at its own; after the commit,
  A finishes by itself. Activation answers the same when asked twice, so a
  lost answer is asked again safely.
- *Crashes* lose sessions, as without moves: A's crash while committing loses
  S if B had not activated it yet; B's crash after activation loses it.

A frozen session does not age: the time it spends frozen does not count
towards its idle TTL, on A after a thaw nor on B after the move.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from bridgepool.errors import BridgePoolError, ErrorCategory
from bridgepool.moves.wire import (
    MOVE_COMMITTING,
    SESSION_MOVING,
    MoveInfo,
    MoveState,
    session_moved_error,
)
from bridgepool_worker.sessions import Session

FOREVER = math.inf


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class Outgoing:
    """A session leaving this worker: frozen, committing, or moved (a tombstone)."""

    session_id: str
    move_id: str
    commit_token: str
    state: MoveState
    idle_at_freeze: float  # seconds idle when frozen: a thaw gives them back
    deadline: float = FOREVER  # monotonic: when a frozen session thaws
    holder: str | None = None
    holder_url: str | None = None
    # An activation may have reached the target (sent, answer unknown): from
    # then on only the target's answer settles the commit.
    maybe_delivered: bool = False


@dataclass
class Incoming:
    """A session arriving here: its pending copy, until activated or dropped."""

    session_id: str
    move_id: str
    token_sha256: str
    session: Session
    idle_seconds: float  # at export: the TTL goes on from here once live
    deadline: float  # monotonic: when the copy is dropped


# -- errors ------------------------------------------------------------------------


def _session_error(type_: str, message: str, status: int, **context: Any) -> BridgePoolError:
    return BridgePoolError.make(ErrorCategory.SESSION, type_, message, status=status, **context)


def session_moving(move: Outgoing | Incoming, now: float) -> BridgePoolError:
    state = move.state.value if isinstance(move, Outgoing) else MoveState.PENDING.value
    expires = None if move.deadline == FOREVER else round(max(0.0, move.deadline - now), 3)
    return BridgePoolError.make(
        ErrorCategory.SESSION,
        SESSION_MOVING,
        f"session {move.session_id!r} is moving between workers ({state}); retry shortly",
        status=503,
        retryable=True,
        session_id=move.session_id,
        move_state=state,
        expires_in_seconds=expires,
    )


def move_in_progress(session_id: str, state: MoveState) -> BridgePoolError:
    return _session_error(
        "move_in_progress",
        f"session {session_id!r} is already moving ({state.value}): one move at a time",
        409,
        session_id=session_id,
        move_state=state.value,
    )


def move_not_found(session_id: str, move_id: str) -> BridgePoolError:
    return _session_error(
        "move_not_found",
        f"no move {move_id!r} of session {session_id!r} in progress here "
        "(never started, aborted, or its time ran out)",
        404,
        session_id=session_id,
        move_id=move_id,
    )


def session_exists(session_id: str) -> BridgePoolError:
    return _session_error(
        "session_exists",
        f"session {session_id!r} already lives on this worker",
        409,
        session_id=session_id,
    )


# -- the table ---------------------------------------------------------------------


class MoveTable:
    """Every move this worker takes part in, by session id."""

    def __init__(self) -> None:
        self.outgoing: dict[str, Outgoing] = {}  # frozen, committing, moved
        self.incoming: dict[str, Incoming] = {}  # pending copies
        # session id -> the move that last brought it here: a repeated
        # activation answers as the first one did.
        self.arrived: dict[str, str] = {}

    def holding(self, session_id: str) -> Outgoing | Incoming | None:
        """The move that holds this session's calls back now, if any; raises
        410 ``session_moved`` for a session that left."""
        out = self.outgoing.get(session_id)
        if out is not None:
            if out.state == MoveState.MOVED:
                raise session_moved_error(out.session_id, out.move_id, out.holder, out.holder_url)
            return out
        return self.incoming.get(session_id)

    def in_progress(self) -> int:
        """Moves not yet decided: frozen, committing, pending."""
        leaving = sum(1 for m in self.outgoing.values() if m.state != MoveState.MOVED)
        return leaving + len(self.incoming)

    # -- source side -------------------------------------------------------------

    def freeze(self, session_id: str, move_id: str, token: str, idle: float) -> Outgoing:
        """Take the move lock of a live session; its clock starts with :meth:`start_clock`."""
        self.holding(session_id)  # a session that left: 410
        busy = self.outgoing.get(session_id)
        if busy is not None:
            raise move_in_progress(session_id, busy.state)
        if session_id in self.incoming:
            raise move_in_progress(session_id, MoveState.PENDING)
        move = Outgoing(session_id, move_id, token, MoveState.FROZEN, idle)
        self.outgoing[session_id] = move
        return move

    @staticmethod
    def start_clock(move: Outgoing, now: float, seconds: float) -> None:
        move.deadline = now + seconds

    def unfreeze(self, session_id: str, move_id: str) -> Outgoing:
        """End a move whose session stays here (its export failed, or the target
        said no to the commit)."""
        move = self.outgoing.get(session_id)
        if move is None or move.move_id != move_id or move.state == MoveState.MOVED:
            raise move_not_found(session_id, move_id)
        del self.outgoing[session_id]
        return move

    def abort_outgoing(self, session_id: str, move_id: str) -> Outgoing:
        """Give up a move before its commit: the caller thaws the session."""
        move = self.outgoing.get(session_id)
        if move is None or move.move_id != move_id or move.state == MoveState.MOVED:
            raise move_not_found(session_id, move_id)
        if move.state == MoveState.COMMITTING:
            raise _session_error(
                MOVE_COMMITTING,
                f"move {move_id!r} of session {session_id!r} is committed: it ends when "
                f"{move.holder_url} answers, not by an abort",
                409,
                session_id=session_id,
                move_id=move_id,
                holder_url=move.holder_url,
            )
        del self.outgoing[session_id]
        return move

    def begin_commit(self, session_id: str, move_id: str, holder_url: str, now: float) -> Outgoing:
        """The decision: a frozen session, within its time, stops thawing. Asked
        again for the same move and holder, it answers with the move as it is."""
        move = self.outgoing.get(session_id)
        if move is None or move.move_id != move_id:
            raise move_not_found(session_id, move_id)
        if move.state == MoveState.FROZEN:
            if now >= move.deadline:
                raise move_not_found(session_id, move_id)  # thaws at the next sweep
            move.state, move.holder_url, move.deadline = MoveState.COMMITTING, holder_url, FOREVER
        elif move.holder_url != holder_url:
            raise _session_error(
                "move_in_progress",
                f"move {move_id!r} of session {session_id!r} is committed to "
                f"{move.holder_url}, not {holder_url}",
                409,
                session_id=session_id,
                move_id=move_id,
                holder_url=move.holder_url,
            )
        return move

    @staticmethod
    def finish_commit(move: Outgoing, holder: str) -> None:
        move.state, move.holder = MoveState.MOVED, holder

    # -- target side -------------------------------------------------------------

    def check_arrival(self, session_id: str, move_id: str) -> bool:
        """Whether a session may arrive by this move (raises why not); True when
        this very move's copy is already here, pending."""
        pending = self.incoming.get(session_id)
        if pending is not None:
            if pending.move_id == move_id:
                return True
            raise move_in_progress(session_id, MoveState.PENDING)
        leaving = self.outgoing.get(session_id)
        if leaving is not None and leaving.state != MoveState.MOVED:
            raise session_exists(session_id)  # it is here, frozen for a move of its own
        return False

    def add_incoming(self, arrival: Incoming) -> None:
        self.incoming[arrival.session_id] = arrival

    def activate(self, session_id: str, move_id: str, token: str) -> Incoming | None:
        """Make the pending copy the session: returns it, to be adopted; None when
        this move already brought it here (a repeated activation)."""
        pending = self.incoming.get(session_id)
        if pending is None or pending.move_id != move_id:
            if self.arrived.get(session_id) == move_id:
                return None
            raise move_not_found(session_id, move_id)
        if token_digest(token) != pending.token_sha256:
            raise _session_error(
                "invalid_commit_token",
                f"the commit token of move {move_id!r} does not match its envelope",
                409,
                session_id=session_id,
                move_id=move_id,
            )
        del self.incoming[session_id]
        self.arrived[session_id] = move_id
        # A session that left earlier and came back: no longer a tombstone.
        self.outgoing.pop(session_id, None)
        return pending

    def discard(self, session_id: str, move_id: str) -> Incoming:
        pending = self.incoming.get(session_id)
        if pending is None or pending.move_id != move_id:
            raise move_not_found(session_id, move_id)
        del self.incoming[session_id]
        return pending

    # -- time and views ------------------------------------------------------------

    def due(self, now: float) -> tuple[list[Outgoing], list[Incoming]]:
        """Frozen sessions whose time ran out (to thaw), pending copies whose
        time ran out (to drop)."""
        thaw = [
            m for m in self.outgoing.values() if m.state == MoveState.FROZEN and now >= m.deadline
        ]
        drop = [m for m in self.incoming.values() if now >= m.deadline]
        return thaw, drop

    def infos(self, now: float) -> list[MoveInfo]:
        def left(deadline: float) -> float | None:
            return None if deadline == FOREVER else round(max(0.0, deadline - now), 3)

        leaving = [
            MoveInfo(
                session_id=m.session_id,
                move_id=m.move_id,
                state=m.state,
                holder=m.holder,
                holder_url=m.holder_url,
                expires_in_seconds=left(m.deadline),
            )
            for m in self.outgoing.values()
        ]
        arriving = [
            MoveInfo(
                session_id=m.session_id,
                move_id=m.move_id,
                state=MoveState.PENDING,
                expires_in_seconds=left(m.deadline),
            )
            for m in self.incoming.values()
        ]
        return leaving + arriving

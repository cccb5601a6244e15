"""The session store: pure, with time passed in.

A session holds one client's state on this worker: a mutable dict handlers
read and write, and the programs created in it. Its idle TTL slides with
every use; expired sessions are removed by :meth:`SessionStore.expire`,
which the worker calls from a background sweep. A session frozen for a move
(``moving``) does not expire: its move decides what becomes of it.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

from bridgepool.errors import BridgePoolError, ErrorCategory
from bridgepool.protocol import SessionInfo

# A session keeps the answers of its last ANSWERS_KEPT calls that carried a call
# id, each up to ANSWER_KEPT_MAX_BYTES: a retry of one of those calls gets its
# answer back instead of running it again. At most 16 x 64 KiB a session; a
# typical answer is well under 1 KiB.
ANSWERS_KEPT = 16
ANSWER_KEPT_MAX_BYTES = 64 * 1024


@dataclass
class Session:
    session_id: str
    created_at: float
    last_activity: float
    state: dict[str, Any] = field(default_factory=dict)
    # program id -> program (see programs.py); kept apart from the user's state
    programs: dict[str, Any] = field(default_factory=dict)
    moving: bool = False  # frozen for a move (see moves.py)
    moved_in: bool = False  # arrived here by a move, its state intact
    # Why an export of it failed for good (protocol.CANNOT_MOVE), until one succeeds.
    unmovable: str | None = None
    # The answers of its last calls that carried a call id (HEADER_CALL_ID),
    # oldest first: call id -> (HTTP status, body). A body too large to keep
    # is None: the call ran, and a retry of it is told so instead of run.
    answers: OrderedDict[str, tuple[int, str | None]] = field(default_factory=OrderedDict)

    def reset(self) -> None:
        self.state.clear()
        self.programs.clear()

    def keep_answer(self, call_id: str, status: int, body: str) -> None:
        """Remember a call's answer, forgetting the oldest past ANSWERS_KEPT."""
        kept = body if len(body) <= ANSWER_KEPT_MAX_BYTES else None
        self.answers[call_id] = (status, kept)
        self.answers.move_to_end(call_id)
        while len(self.answers) > ANSWERS_KEPT:
            self.answers.popitem(last=False)


def session_not_found(session_id: str) -> BridgePoolError:
    return BridgePoolError.make(
        ErrorCategory.SESSION,
        "session_not_found",
        f"no session {session_id!r} on this worker",
        status=404,
        session_id=session_id,
    )


class SessionStore:
    """Sessions by id, with a sliding idle TTL and a cap on how many exist."""

    def __init__(self, ttl_seconds: float, max_sessions: int) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def _expired(self, session: Session, now: float) -> bool:
        return not session.moving and now - session.last_activity >= self.ttl_seconds

    def get(self, session_id: str, now: float) -> Session | None:
        """The live session, or None (an expired one counts as gone)."""
        session = self._sessions.get(session_id)
        if session is None or self._expired(session, now):
            return None
        return session

    def can_open(self, session_id: str, now: float, reserved: int = 0) -> BridgePoolError | None:
        """Why a new session with this id cannot be opened now, if it cannot.
        ``reserved``: places promised to sessions not yet here (moving in)."""
        if self.get(session_id, now) is not None:
            return None
        # Counting live sessions is linear, so only near the cap.
        cap = self.max_sessions - reserved
        if len(self._sessions) >= cap and self.live_count(now) >= cap:
            return BridgePoolError.make(
                ErrorCategory.RESOURCE,
                "session_limit",
                f"this worker holds its maximum of {self.max_sessions} sessions",
                status=503,
                retryable=True,
                max_sessions=self.max_sessions,
            )
        return None

    def open(self, session_id: str, now: float) -> tuple[Session, bool]:
        """The session, created if new, marked used now; and whether it was created.

        Raises the ``resource`` error of :meth:`can_open` beyond the cap.
        """
        session = self.get(session_id, now)
        if session is not None:
            session.last_activity = now
            return session, False
        refusal = self.can_open(session_id, now)
        if refusal is not None:
            raise refusal
        session = Session(session_id=session_id, created_at=now, last_activity=now)
        self._sessions[session_id] = session
        return session, True

    def adopt(self, session: Session) -> None:
        """Hold a session that moved here (its place was reserved at import)."""
        self._sessions[session.session_id] = session

    def pop(self, session_id: str) -> Session | None:
        """Drop a session that moved away."""
        return self._sessions.pop(session_id, None)

    def touch(self, session_id: str, now: float) -> None:
        session = self._sessions.get(session_id)
        if session is not None:
            session.last_activity = max(session.last_activity, now)

    def delete(self, session_id: str, now: float) -> Session:
        """Remove a live session; a 404 ``session`` error if there is none."""
        if self.get(session_id, now) is None:
            raise session_not_found(session_id)
        return self._sessions.pop(session_id)

    def expire(self, now: float) -> list[Session]:
        """Remove and return the sessions idle for the TTL or longer."""
        gone = [s for s in self._sessions.values() if self._expired(s, now)]
        for session in gone:
            del self._sessions[session.session_id]
        return gone

    def infos(self, now: float) -> list[SessionInfo]:
        return [
            SessionInfo(
                session_id=s.session_id,
                created_at=s.created_at,
                last_activity=s.last_activity,
                idle_seconds=max(0.0, now - s.last_activity),
                expires_in_seconds=max(0.0, s.last_activity + self.ttl_seconds - now),
                moving=s.moving,
                moved_in=s.moved_in,
                unmovable=s.unmovable,
            )
            for s in self._sessions.values()
            if not self._expired(s, now)
        ]

    def unmovable_counts(self, now: float) -> dict[str, int]:
        """Live sessions that cannot move, counted by reason."""
        return dict(
            Counter(
                s.unmovable
                for s in self._sessions.values()
                if s.unmovable is not None and not self._expired(s, now)
            )
        )

    def live_count(self, now: float) -> int:
        return sum(1 for s in self._sessions.values() if not self._expired(s, now))

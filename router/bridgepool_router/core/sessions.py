"""The session table: which worker holds which session, as the router last knew;
and the rebind decision: when a binding no longer holds, and which worker the
session follows then.

The table is a cache. Workers are the source of truth; on a miss the router
asks them. A binding expires after the session's idle TTL (sliding: every call
renews it), the same rule the worker applies to the session itself.

Several routers each keep their own table, with no shared store. When one of
them finds a binding broken (its worker gone, restarted or unreachable), another
router may already have moved the session; so before placing it afresh a router
asks the workers, and follows the copy it finds. That is how routers converge on
one holder per session.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum


@dataclass
class _Binding:
    worker: str
    last_used: float
    # Its worker restarted since: the session's state is gone (see mark_lost).
    lost: bool = False


class SessionTable:
    def __init__(self, idle_ttl_seconds: float) -> None:
        self.idle_ttl_seconds = idle_ttl_seconds
        self._bindings: dict[str, _Binding] = {}

    def __len__(self) -> int:
        return len(self._bindings)

    def lookup(self, session_id: str, now: float) -> str | None:
        """The worker holding ``session_id``, renewing the binding; None if unknown
        or idle for longer than the TTL."""
        binding = self._bindings.get(session_id)
        if binding is None:
            return None
        if now - binding.last_used >= self.idle_ttl_seconds:
            del self._bindings[session_id]
            return None
        binding.last_used = now
        return binding.worker

    def bind(self, session_id: str, worker: str, now: float) -> None:
        self._bindings[session_id] = _Binding(worker, now)

    def lost_on(self, session_id: str, worker: str) -> bool:
        """Whether ``session_id`` is bound to ``worker`` and lost its state there."""
        binding = self._bindings.get(session_id)
        return binding is not None and binding.lost and binding.worker == worker

    def forget(self, session_id: str, worker: str | None = None) -> None:
        """Drop the binding (only if it names ``worker``, when given)."""
        binding = self._bindings.get(session_id)
        if binding is not None and worker in (None, binding.worker):
            del self._bindings[session_id]

    def mark_lost(self, worker: str) -> int:
        """``worker`` restarted: its sessions' state is gone. Their bindings stay,
        marked, so each session's next call can say so (a rebound) instead of
        starting afresh unnoticed. Returns how many were marked."""
        marked = 0
        for binding in self._bindings.values():
            if binding.worker == worker and not binding.lost:
                binding.lost = True
                marked += 1
        return marked

    def is_lost(self, session_id: str) -> bool:
        binding = self._bindings.get(session_id)
        return binding is not None and binding.lost

    def count_by_worker(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for binding in self._bindings.values():
            counts[binding.worker] = counts.get(binding.worker, 0) + 1
        return counts

    def expire(self, now: float) -> int:
        """Drop bindings idle past the TTL; returns how many were dropped."""
        stale = [
            sid for sid, b in self._bindings.items() if now - b.last_used >= self.idle_ttl_seconds
        ]
        for sid in stale:
            del self._bindings[sid]
        return len(stale)


class Rebound(StrEnum):
    """Why a session left the worker it was bound to (the
    X-BridgePool-Session-Rebound-Reason header). The old state is gone either way."""

    WORKER_GONE = "worker_gone"  # left discovery
    WORKER_UNREACHABLE = "worker_unreachable"  # its breaker is open
    WORKER_RESTARTED = "worker_restarted"  # a new process, without the session's state


@dataclass(frozen=True)
class SessionCopy:
    """A worker's answer to "do you hold this session?": yes, last used then."""

    worker: str
    last_activity: float


def choose_holder(
    copies: Iterable[SessionCopy],
    *,
    unusable: Collection[str] = (),
    last_resort: str | None = None,
) -> str | None:
    """The worker a session follows among those that hold a copy of it.

    If several do (it moved while its old worker was unreachable), the most
    recently used copy wins. Copies on ``unusable`` workers do not count, and a
    copy on ``last_resort`` counts only when there is no other: after a restart
    that worker's copy is new, and a copy elsewhere is where another router put
    the session meanwhile.
    """
    usable = [c for c in copies if c.worker not in unusable]
    preferred = [c for c in usable if c.worker != last_resort] or usable
    if not preferred:
        return None
    return max(preferred, key=lambda c: (c.last_activity, c.worker)).worker


@dataclass(frozen=True)
class Rebind:
    """A binding that no longer holds: why, and the worker it named. Before
    placing the session afresh the router asks the workers for a copy of it
    (see :func:`choose_holder`): another router may have moved it already."""

    reason: Rebound
    previous: str

    def unusable(self, unreachable: Iterable[str]) -> frozenset[str]:
        """Workers whose copy of the session cannot be followed: those this
        router cannot reach (their breakers are open), ``previous`` among them
        when that is why the binding broke."""
        out = set(unreachable)
        if self.reason is Rebound.WORKER_UNREACHABLE:
            out.add(self.previous)
        return frozenset(out)

    @property
    def last_resort(self) -> str | None:
        """A restarted worker's copy is new: follow it only if no other worker
        holds one (a copy elsewhere is where another router put the session)."""
        return self.previous if self.reason is Rebound.WORKER_RESTARTED else None


def check_binding(
    worker: str, *, present: bool, state_lost: bool, breaker_open: bool
) -> Rebind | None:
    """Whether a session bound to ``worker`` must leave it: the worker left the
    pool, restarted (``state_lost``, see :meth:`SessionTable.mark_lost`) or
    cannot be reached (``breaker_open``). None: the session stays."""
    if not present:
        return Rebind(Rebound.WORKER_GONE, worker)
    if state_lost:
        return Rebind(Rebound.WORKER_RESTARTED, worker)
    if breaker_open:
        return Rebind(Rebound.WORKER_UNREACHABLE, worker)
    return None

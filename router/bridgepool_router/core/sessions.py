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

# A binding: (worker, last used, the worker's restart count when bound; fewer
# than it has now means the worker restarted since and the session's state is
# gone, see mark_lost). A plain tuple of atoms, which the garbage collector
# stops tracking: 100,000 of them add nothing to a full collection, whereas
# as many class instances would add about 6 ms to every one.
_Binding = tuple[str, float, int]


@dataclass(slots=True)
class _WorkerSessions:
    """One worker's share of the table, kept as bindings come and go, so a
    pick (which weighs every worker's sessions) costs nothing per session."""

    bound: int = 0  # bindings naming the worker
    fresh: int = 0  # of them, made since its last restart (not lost)
    restarts: int = 0  # restarts seen by mark_lost


class SessionTable:
    """Bindings in the order of their last use, oldest first: a lookup moves its
    binding to the end, so expiry reads only the stale ones at the front (the
    ``now`` passed in never goes backwards: a monotonic clock)."""

    def __init__(self, idle_ttl_seconds: float) -> None:
        self.idle_ttl_seconds = idle_ttl_seconds
        self._bindings: dict[str, _Binding] = {}
        self._workers: dict[str, _WorkerSessions] = {}

    def __len__(self) -> int:
        return len(self._bindings)

    def lookup(self, session_id: str, now: float) -> str | None:
        """The worker holding ``session_id``, renewing the binding; None if unknown
        or idle for longer than the TTL."""
        binding = self._bindings.pop(session_id, None)
        if binding is None:
            return None
        worker, last_used, restarts = binding
        if now - last_used >= self.idle_ttl_seconds:
            self._dropped(binding)
            return None
        self._bindings[session_id] = (worker, now, restarts)  # now the most recently used
        return worker

    def bind(self, session_id: str, worker: str, now: float) -> None:
        old = self._bindings.pop(session_id, None)
        if old is not None:
            self._dropped(old)
        counts = self._workers.get(worker)
        if counts is None:
            counts = self._workers[worker] = _WorkerSessions()
        counts.bound += 1
        counts.fresh += 1
        self._bindings[session_id] = (worker, now, counts.restarts)

    def _dropped(self, binding: _Binding) -> None:
        """Account for a binding taken out of the table."""
        worker, _, restarts = binding
        counts = self._workers[worker]
        counts.bound -= 1
        if restarts == counts.restarts:
            counts.fresh -= 1
        if counts.bound == 0:
            del self._workers[worker]  # a gone worker leaves nothing behind

    def _lost(self, binding: _Binding) -> bool:
        worker, _, restarts = binding
        return restarts < self._workers[worker].restarts

    def lost_on(self, session_id: str, worker: str) -> bool:
        """Whether ``session_id`` is bound to ``worker`` and lost its state there."""
        binding = self._bindings.get(session_id)
        return binding is not None and binding[0] == worker and self._lost(binding)

    def forget(self, session_id: str, worker: str | None = None) -> None:
        """Drop the binding (only if it names ``worker``, when given)."""
        binding = self._bindings.get(session_id)
        if binding is not None and worker in (None, binding[0]):
            del self._bindings[session_id]
            self._dropped(binding)

    def mark_lost(self, worker: str) -> int:
        """``worker`` restarted: its sessions' state is gone. Their bindings stay,
        marked, so each session's next call can say so (a rebound) instead of
        starting afresh unnoticed. Returns how many were marked. O(1): the
        bindings are marked by the worker's restart count, not one by one."""
        counts = self._workers.get(worker)
        if counts is None:
            return 0
        marked, counts.fresh = counts.fresh, 0
        counts.restarts += 1
        return marked

    def is_lost(self, session_id: str) -> bool:
        binding = self._bindings.get(session_id)
        return binding is not None and self._lost(binding)

    def sessions_on(self, worker: str) -> int:
        counts = self._workers.get(worker)
        return 0 if counts is None else counts.bound

    def count_by_worker(self) -> dict[str, int]:
        return {worker: counts.bound for worker, counts in self._workers.items()}

    def expire(self, now: float, limit: int | None = None) -> int:
        """Drop bindings idle past the TTL (at most ``limit`` of them); returns
        how many were dropped. The stale ones are the oldest, at the front."""
        stale: list[str] = []
        for session_id, (_, last_used, _) in self._bindings.items():
            if now - last_used < self.idle_ttl_seconds or len(stale) == limit:
                break
            stale.append(session_id)
        for session_id in stale:
            self._dropped(self._bindings.pop(session_id))
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
    moved_in: bool = False  # it came to that worker by a move, its state intact


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

"""The session table: which worker holds which session, as the router last knew.

It is a cache. Workers are the source of truth; on a miss the router asks them.
A binding expires after the session's idle TTL (sliding: every call renews it),
the same rule the worker applies to the session itself.
"""

from __future__ import annotations

from dataclasses import dataclass


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

    def forget(self, session_id: str) -> None:
        self._bindings.pop(session_id, None)

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

"""The per-pool FIFO wait queue for calls that find every candidate worker busy.

Each waiter may name a target worker (a sticky call waits for *its* worker) or
none (any worker will do). When a slot frees, the oldest waiter that can use it
is served first; a waiter for a busy worker does not block the ones behind it.
A call that already reached a worker and was turned away as busy (another
router had its slots) waits *ahead* of the others: it keeps its place in line
rather than starting again at the back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Waiter:
    ticket: int
    target: str | None  # None: any worker
    new_session: bool = False
    exclude: frozenset[str] = field(default_factory=frozenset)
    ahead: bool = False  # turned away as busy once: served before the others


class WaitQueue:
    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self._ahead: dict[int, Waiter] = {}  # insertion-ordered: FIFO among them
        self._waiters: dict[int, Waiter] = {}
        self._next_ticket = 0

    def __len__(self) -> int:
        return len(self._ahead) + len(self._waiters)

    def admit(
        self,
        *,
        target: str | None = None,
        new_session: bool = False,
        exclude: frozenset[str] = frozenset(),
        ahead: bool = False,
    ) -> Waiter | None:
        """Queue a call, or None when the queue is full (the call is rejected)."""
        if len(self) >= self.max_length:
            return None
        self._next_ticket += 1
        waiter = Waiter(self._next_ticket, target, new_session, exclude, ahead)
        (self._ahead if ahead else self._waiters)[waiter.ticket] = waiter
        return waiter

    def take_first(self, can_serve: Callable[[Waiter], bool]) -> Waiter | None:
        """Remove and return the first waiter ``can_serve`` accepts: those
        waiting ahead first, then the oldest."""
        for line in (self._ahead, self._waiters):
            for waiter in line.values():
                if can_serve(waiter):
                    del line[waiter.ticket]
                    return waiter
        return None

    def remove(self, ticket: int) -> bool:
        return (
            self._ahead.pop(ticket, None) is not None or self._waiters.pop(ticket, None) is not None
        )

    def waiting_for(self, target: str) -> list[Waiter]:
        return [
            w for line in (self._ahead, self._waiters) for w in line.values() if w.target == target
        ]

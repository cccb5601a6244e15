"""The router's decisions as pure code over observed state and an injected clock:
session table, circuit breaker, retry policy and budget, worker choice, wait queue
and health tracking. Nothing here touches sockets, tasks or the wall clock."""

from __future__ import annotations

from collections.abc import Callable

# A monotonic clock in seconds; tests pass their own.
Clock = Callable[[], float]

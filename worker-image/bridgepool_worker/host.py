"""A place that holds sessions, as the worker's mover sees it: what the
mover (:mod:`bridgepool_worker.mover`) reads and calls to move this
worker's sessions out and in. The worker's runtime is one, structurally;
the mover knows nothing else of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bridgepool.errors import BridgePoolError
from bridgepool_worker.config import WorkerConfig
from bridgepool_worker.gate import Gate
from bridgepool_worker.metrics import WorkerMetrics
from bridgepool_worker.registry import CommandRegistry
from bridgepool_worker.sessions import SessionStore

Clock = Callable[[], float]


class SessionHost(Protocol):
    """This worker, as the place its sessions live: its name and process,
    its sessions, the keys it asks its peers with, the state hooks that
    write and rebuild a session, and its clocks (wall: a session's times;
    mono: deadlines)."""

    name: str
    incarnation: str
    config: WorkerConfig
    metrics: WorkerMetrics
    sessions: SessionStore
    registry: CommandRegistry
    gate: Gate
    wall: Clock
    mono: Clock

    def new_session_refusal(self, session_id: str, reserved: int = 0) -> BridgePoolError | None:
        """Why a session new here is refused now, if it is (``reserved``:
        places promised to sessions moving in)."""
        ...

    async def wait_session_idle(self, session_id: str, seconds: float) -> bool:
        """Wait until no call of the session runs; False if some still do
        after ``seconds``."""
        ...

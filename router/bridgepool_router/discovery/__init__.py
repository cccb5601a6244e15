"""Where the router learns its pools and their workers.

A backend (static list or Kubernetes watch) produces :class:`PoolSnapshot`\\ s and
hands each one to a :class:`DiscoverySink`; the router applies it (new workers
get health checks, vanished workers lose their sessions, draining marks stop new
sessions). Backends hold no routing state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from bridgepool.names import PoolRef
from bridgepool.spec import RoutingSettings, SessionSettings


@dataclass(frozen=True)
class WorkerEndpoint:
    """One worker as discovery sees it."""

    worker: str  # stable name: the pod name, or host:port for static workers
    url: str  # base URL, e.g. http://10.0.0.7:8080
    draining: bool = False
    # Readiness as the platform reports it (a pod's Ready condition); the
    # router's own /readyz checks decide from there.
    ready: bool = True


@dataclass(frozen=True)
class PoolSnapshot:
    """Everything the router needs about one pool at one moment."""

    ref: PoolRef  # namespace and name: same-named pools of two namespaces are two pools
    workers: tuple[WorkerEndpoint, ...] = ()
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)


class DiscoverySink(Protocol):
    def apply(self, snapshot: PoolSnapshot) -> None: ...

    def remove_pool(self, ref: PoolRef) -> None: ...

    def mark_synced(self) -> None:
        """The backend has delivered its first complete view."""


class Discovery(Protocol):
    async def run(self, sink: DiscoverySink) -> None:
        """Deliver snapshots until cancelled."""

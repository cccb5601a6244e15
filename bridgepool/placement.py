"""Where a session lives when it is placed afresh: its *home* among the
workers fit to take it, the same wherever it is computed.

Rendezvous (highest-random-weight) hashing of (session, worker): every router
placing a new session, and the operator moving a draining worker's sessions,
pick the same worker from the same workers. Sessions spread evenly, and a
worker joining or leaving moves only its own share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass


def home_score(session_id: str, worker: str) -> bytes:
    """The weight of ``worker`` for ``session_id``: the home is the highest."""
    return hashlib.blake2b(f"{session_id}\0{worker}".encode(), digest_size=8).digest()


def home_of(session_id: str, workers: Iterable[str]) -> str | None:
    """The home of ``session_id`` among ``workers`` (None when there are none)."""
    return max(workers, key=lambda w: home_score(session_id, w), default=None)


@dataclass(frozen=True)
class Target:
    """A worker a session may be placed or moved on: its name (what homes are
    computed over) and its base URL."""

    name: str
    url: str

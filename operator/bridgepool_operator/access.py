"""Who may reach a pool's workers, and when the operator writes it down.

Beside each pool the operator keeps two objects (``pods.py`` builds them): the
Secret of the pool's keys, which its workers mount, and a NetworkPolicy that
lets only the release's router and operator, the pool's own workers and the
scrape source reach them. It writes them when what they would say changes (the
pool, a rotation of the release keys, the operator's settings), on its first
pass over a pool after it starts, and every ``RESYNC_SECONDS`` in case one was
deleted; not on every pass. Pure: ``actions.keep_access`` does the writing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from bridgepool.credentials import Keys
from bridgepool.spec import BridgePoolSpec

from .config import OperatorConfig
from .pods import PolicyPeers, PoolRef, build_keys_secret, build_network_policy

# Seconds after which a pool's objects are written again though nothing
# changed: one deleted by hand comes back within this time.
RESYNC_SECONDS = 600.0

# (namespace, pool name), as the runtime's PoolKey (which imports this module).
PoolId = tuple[str, str]


@dataclass(frozen=True)
class PoolAccess:
    """The objects that guard one pool's workers, as they should be."""

    secret: dict[str, Any]
    # None: the pool has no NetworkPolicy (one the operator made goes).
    policy: dict[str, Any] | None

    @property
    def fingerprint(self) -> str:
        """A digest of all the objects say, keys included: the same digest, nothing to write."""
        text = json.dumps([self.secret, self.policy], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def policy_peers(config: OperatorConfig) -> PolicyPeers | None:
    """Whom the operator's settings let reach workers; None when its network policy is off."""
    if not config.network_policy:
        return None
    assert config.release_namespace is not None, "load_config requires it"
    return PolicyPeers(
        release_namespace=config.release_namespace,
        router=config.router_selector,
        operator=config.operator_selector,
        scrape_from=config.network_policy_scrape_from,
    )


def wanted_access(
    pool: PoolRef, keys: Keys, spec: BridgePoolSpec, peers: PolicyPeers | None
) -> PoolAccess:
    """The pool's objects: its keys' Secret always; its NetworkPolicy when both the
    operator (``peers``) and the pool's ``spec.networkPolicy.enabled`` want one."""
    policy = None
    if peers is not None and spec.network_policy.enabled:
        policy = build_network_policy(pool, peers)
    return PoolAccess(secret=build_keys_secret(pool, keys), policy=policy)


class AccessLedger:
    """What the operator last wrote of each pool's objects, and when: the
    bookkeeping that spares a pass the writes. In memory only, so an operator
    that starts writes every pool's objects once."""

    def __init__(self, resync_seconds: float = RESYNC_SECONDS) -> None:
        self.resync_seconds = resync_seconds
        self._written: dict[PoolId, tuple[str, float]] = {}  # fingerprint, when
        self._keys_written: set[PoolId] = set()
        self._failure: dict[PoolId, str] = {}

    def due(self, pool: PoolId, fingerprint: str, now: float) -> bool:
        """Whether to write the pool's objects: never written by this process,
        changed since, or written ``resync_seconds`` ago."""
        last = self._written.get(pool)
        return last is None or last[0] != fingerprint or now - last[1] >= self.resync_seconds

    def keys_written(self, pool: PoolId) -> None:
        """The pool's Secret was written: its new worker pods can mount it."""
        self._keys_written.add(pool)

    def has_keys(self, pool: PoolId) -> bool:
        """Whether this process has written the pool's Secret (now or before)."""
        return pool in self._keys_written

    def written(self, pool: PoolId, fingerprint: str, now: float) -> None:
        """All of the pool's objects say what ``fingerprint`` stands for."""
        self._written[pool] = (fingerprint, now)
        self._keys_written.add(pool)
        self._failure.pop(pool, None)

    def failed(self, pool: PoolId, message: str) -> bool:
        """Note a failed write; whether it is news (not the last failure again)."""
        news = self._failure.get(pool) != message
        self._failure[pool] = message
        return news

    def forget(self, pool: PoolId) -> None:
        """The pool is gone (its objects go with it)."""
        self._written.pop(pool, None)
        self._keys_written.discard(pool)
        self._failure.pop(pool, None)

"""What the operator's handlers share (the API client, the HTTP session, the
release's keys, the pools' wake-up events), and how kopf is set up and torn
down."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import kopf
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from bridgepool import labels
from bridgepool.credentials import PoolKeys
from bridgepool.names import PoolRef
from bridgepool.worker_http import WorkerHttp

from .access import AccessLedger
from .config import OperatorConfig

PoolKey = tuple[str, str]  # (namespace, pool name)


class EventPoster(Protocol):
    def __call__(self, body: kopf.Body, /, *, type: str, reason: str, message: str) -> None: ...


# How long kopf waits for a signalled pool loop to end before it reschedules.
INSTANT_EXIT_SECONDS = 2.0


@dataclass
class Runtime:
    """What the handlers share, kept in kopf's memo (no module globals)."""

    config: OperatorConfig
    api: k8s.ApiClient
    http: aiohttp.ClientSession
    # Every pool's keys, from the release key directory (re-read when it changes).
    keys: PoolKeys
    wakeups: dict[PoolKey, asyncio.Event] = field(default_factory=dict)
    # Posts an event on the pool: kopf's poster, or a recorder in a test that
    # runs passes without kopf.
    post_event: EventPoster = kopf.event
    # What each pool's Secret of keys and NetworkPolicy last said, as written.
    access: AccessLedger = field(default_factory=AccessLedger)

    def wakeup(self, key: PoolKey) -> asyncio.Event:
        return self.wakeups.setdefault(key, asyncio.Event())

    def workers(self, key: PoolKey) -> WorkerHttp:
        """HTTP to the workers of one pool, with the pool's keys as they are now."""
        return WorkerHttp(self.http, self.keys.of(PoolRef(*key)))


def configure(settings: kopf.OperatorSettings) -> None:
    # kopf's own bookkeeping goes to annotations under our prefix, so the
    # status schema stays strict (no preserved unknown fields there).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=labels.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=labels.GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{labels.GROUP}/finalizer"
    # Only the operator's explicit events reach the pool, not its log lines;
    # `kubectl describe bp` shows them from the operator, not from "kopf".
    settings.posting.loggers = False
    settings.posting.reporting_component = labels.MANAGED_BY
    settings.posting.reporting_instance = socket.gethostname()  # the pod's name in a cluster
    settings.watching.server_timeout = 60
    # When a pool is deleted, kopf signals its loop to stop and, unless the
    # loop has ended within this time, checks again only after the daemon's
    # cancellation backoff (10 s): the pool would wait that long for its
    # finalizer. The loop ends between passes, well within a second.
    settings.background.instant_exit_timeout = INSTANT_EXIT_SECONDS


async def start(memo: kopf.Memo, config: OperatorConfig, keys: PoolKeys) -> None:
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        await k8s_config.load_kube_config()
    timeout = aiohttp.ClientTimeout(total=config.stats_timeout_seconds)
    memo.runtime = Runtime(
        config=config,
        api=k8s.ApiClient(),
        http=aiohttp.ClientSession(timeout=timeout),
        keys=keys,
    )


async def stop(memo: kopf.Memo) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        await runtime.http.close()
        await runtime.api.close()

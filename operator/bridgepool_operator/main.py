"""kopf registrations, and nothing else: each delegates to the module of its job."""

from __future__ import annotations

import os
from typing import Any

import kopf

from bridgepool import labels
from bridgepool.credentials import PoolKeys

from . import index, loop, runtime
from .config import SOURCES, OperatorConfig, release_keys

POD_FILTER = {labels.LABEL_MANAGED_BY: labels.MANAGED_BY}


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    runtime.configure(settings)
    await runtime.start(memo, *start_settings(memo))


def start_settings(memo: kopf.Memo) -> tuple[OperatorConfig, PoolKeys]:
    """The settings and release keys ``bridgepool-operator`` put in the memo;
    under `kopf run` they come from the environment."""
    config = memo.get("config") or SOURCES.load([], os.environ)
    # memo.get, not getattr: a Memo is a dict, and memo.keys its keys() method.
    return config, memo.get("release_keys") or release_keys(config)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await runtime.stop(memo)


@kopf.index("pods", labels=POD_FILTER)
def pods_by_pool(
    namespace: str | None, meta: kopf.Meta, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> dict[Any, Any]:
    return index.index_pod(namespace or "", meta, body)


@kopf.on.event("pods", labels=POD_FILTER)
def pod_changed(namespace: str | None, meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    index.wake_for_pod(memo.runtime, namespace or "", meta)


@kopf.on.event(labels.GROUP, labels.VERSION, labels.PLURAL)
def pool_changed(
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    status: kopf.Status,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    index.wake_for_pool(memo.runtime, namespace or "", name, meta, status)


# On a pool's deletion kopf sets ``stopped`` and gives the loop
# ``cancellation_backoff`` seconds to end its pass; only then does it cancel
# the task (without a backoff it cancels at once, mid-pass).
@kopf.daemon(
    labels.GROUP,
    labels.VERSION,
    labels.PLURAL,
    cancellation_backoff=10.0,
    cancellation_timeout=5.0,
)
async def pool_loop(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    # kopf passes each index by its function's name.
    await loop.run_pool(memo.runtime, body, kwargs["pods_by_pool"], stopped)

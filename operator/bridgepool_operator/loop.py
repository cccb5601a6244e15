"""The Kubernetes executor of one pool, and the kopf daemon that runs its passes.

One long-lived task per BridgePool (a kopf daemon) runs the planner's loop
(``bridgepool_planner.passes``) over a :class:`KubernetesExecutor`, so two
passes over the same pool never overlap. It wakes every ``interval``
seconds and whenever one of the pool's pods changes or the pool's spec does.

The executor observes from kopf's views (the pool's live body, the pod
index) and the workers' stats, and applies through the API server
(``actions.py``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from bridgepool import labels
from bridgepool.errors import validation_problems
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus
from bridgepool_planner.passes import (
    LoopSettings,
    Observed,
    PassOutcome,
    PassResult,
    Stopping,
    run_passes,
)
from bridgepool_planner.planner import Action

from . import metrics
from .actions import execute, failure_message, keep_access, remember_valid_spec
from .expectations import pass_visible
from .observe import observe
from .pods import revision_of
from .runtime import PoolKey, Runtime

log = logging.getLogger("bridgepool.operator")


def invalid_spec_message(err: ValidationError) -> str:
    """What is wrong with a spec, for a human: each problem with its field.
    Our own validators' messages name their fields already."""
    return validation_problems(err, root="spec")


def last_valid_spec(meta: Mapping[str, Any]) -> BridgePoolSpec | None:
    """The last spec the operator could use, from the pool's annotation (None
    when there is none or it cannot be read)."""
    raw = (meta.get("annotations") or {}).get(labels.ANNOTATION_LAST_VALID_SPEC)
    if raw is None:
        return None
    try:
        return BridgePoolSpec.model_validate_json(raw)
    except ValidationError:
        return None


def previous_status(body: Mapping[str, Any]) -> BridgePoolStatus:
    try:
        return BridgePoolStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return BridgePoolStatus()  # unreadable status: start afresh, pods tell the rest


def with_revision(spec: BridgePoolSpec | None) -> tuple[BridgePoolSpec, str] | None:
    return None if spec is None else (spec, revision_of(spec))


class KubernetesExecutor:
    """One pool's workers as pods: observed from kopf's views and the
    workers' stats, changed through the API server."""

    def __init__(
        self, runtime: Runtime, body: kopf.Body, pods: kopf.Index[Any, Any] | Mapping[Any, Any]
    ) -> None:
        meta = body["metadata"]
        self.runtime = runtime
        self.body = body  # kopf keeps it live: the pool as its watch last saw it
        self.key: PoolKey = (meta["namespace"], meta["name"])
        self.label = f"{meta['namespace']}/{meta['name']}"
        self._pods = pods

    def pods(self) -> Iterable[Mapping[str, Any]]:
        return list(self._pods.get(self.key, []))

    def last_seen(self) -> Observed:
        meta = self.body.get("metadata", {})
        return Observed(
            name=meta["name"],
            generation=int(meta.get("generation") or 0),
            status=previous_status(self.body),
        )

    async def observe(self, now: datetime) -> Observed:
        seen = self.last_seen()
        http = self.runtime.workers(self.key)
        pods = self.pods()
        try:
            spec = BridgePoolSpec.model_validate(self.body.get("spec") or {})
        except ValidationError as err:
            last_valid = last_valid_spec(self.body.get("metadata", {}))
            has_keys = last_valid is not None and await keep_access(
                self.runtime, self.body, last_valid
            )
            return Observed(
                name=seen.name,
                generation=seen.generation,
                status=seen.status,
                problem=invalid_spec_message(err),
                last_valid=with_revision(last_valid),
                workers=[] if last_valid is None else await observe(http, pods),
                may_create=has_keys,
            )
        has_keys = await keep_access(self.runtime, self.body, spec)
        return Observed(
            name=seen.name,
            generation=seen.generation,
            status=seen.status,
            valid=with_revision(spec),
            workers=await observe(http, pods),
            may_create=has_keys,
        )

    async def apply(
        self, observed: Observed, actions: Sequence[Action], result: PassResult
    ) -> None:
        raw_status = self.body.get("status") or {}
        await execute(
            self.runtime,
            self.body,
            observed.planned_on,
            list(actions),
            raw_status,
            result,
            previous=observed.status,
        )
        if observed.valid is not None:
            await remember_valid_spec(self.runtime, self.body, observed.valid[0])

    def visible(self, result: PassResult) -> bool:
        return pass_visible(result, self.body, self.pods())

    def record_pass(self, outcome: PassOutcome, seconds: float) -> None:
        metrics.METRICS.record_pass(outcome, seconds)

    def describe_failure(self, err: BaseException) -> str:
        return failure_message(err)


async def run_pool(
    runtime: Runtime,
    body: kopf.Body,
    pods_by_pool: kopf.Index[Any, Any] | Mapping[Any, Any],
    stopped: Stopping,
    settings: LoopSettings | None = None,
) -> None:
    """Reconcile one pool until kopf stops the daemon (pool deleted, operator exiting)."""
    executor = KubernetesExecutor(runtime, body, pods_by_pool)
    key = executor.key
    settings = settings or LoopSettings(
        runtime.config.interval_seconds, runtime.config.settle_timeout_seconds
    )
    try:
        await run_passes(executor, settings, runtime.wakeup(key), stopped, log)
    finally:
        runtime.wakeups.pop(key, None)
        runtime.access.forget(key)
        metrics.METRICS.forget_pool(*key)
        log.info(
            "stopped reconciling the pool",
            extra={
                "namespace": key[0],
                "pool": key[1],
                "why": str(getattr(stopped, "reason", None) or "cancelled"),
            },
        )

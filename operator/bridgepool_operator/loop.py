"""The per-pool loop: observe, plan, execute, one pass at a time.

One long-lived task per BridgePool (a kopf daemon) runs the passes, so two
passes over the same pool never overlap. It wakes every ``interval`` seconds
and whenever one of the pool's pods changes or the pool's spec does."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from bridgepool import labels
from bridgepool.backoff import backoff_seconds
from bridgepool.errors import validation_problems
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus

from . import metrics
from .actions import execute, failure_message, keep_access, remember_valid_spec
from .expectations import PassResult, pass_visible
from .planner import (
    Action,
    CreatePod,
    Pool,
    plan,
    plan_invalid,
    unplannable,
)
from .runtime import PoolKey, Runtime
from .worker_stats import observe

log = logging.getLogger("bridgepool.operator")


# Longest wait between passes over a pool whose passes keep failing.
MAX_FAILURE_DELAY_SECONDS = 60.0


def invalid_spec_message(err: ValidationError) -> str:
    """What is wrong with a spec, for a human: each problem with its field.
    Our own validators' messages name their fields already."""
    return validation_problems(err, root="spec")


async def reconcile(
    runtime: Runtime,
    body: kopf.Body,
    pods: Iterable[Mapping[str, Any]],
    now: datetime,
    result: PassResult,
) -> None:
    """Observe, plan, execute: one pass over one pool. What it changed goes
    into ``result``, also when the pass fails part way."""
    meta, raw_status = body.get("metadata", {}), body.get("status") or {}
    name = meta["name"]
    http = runtime.workers((meta["namespace"], name))
    generation = int(meta.get("generation") or 0)
    previous = previous_status(body)
    try:
        spec = BridgePoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        metrics.RECONCILE_TOTAL.labels("invalid").inc()
        last_valid = last_valid_spec(meta)
        has_keys = last_valid is not None and await keep_access(runtime, body, last_valid)
        workers = [] if last_valid is None else await observe(http, pods)
        message = invalid_spec_message(err)
        # The pool keeps healing on its last valid spec while it says this one is invalid.
        actions = plan_invalid(name, generation, previous, last_valid, workers, message, now)
        actions = actions if has_keys else without_creates(actions)
        await execute(runtime, body, last_valid, actions, raw_status, result, previous=previous)
        return
    has_keys = await keep_access(runtime, body, spec)
    workers = await observe(http, pods)
    unmovable = {
        pod: why for (ns, pod), why in runtime.unmovable.items() if ns == meta["namespace"]
    }
    actions = plan(Pool(name, generation, spec, previous, unmovable), workers, now)
    actions = actions if has_keys else without_creates(actions)
    await execute(runtime, body, spec, actions, raw_status, result, previous=previous)
    await remember_valid_spec(runtime, body, spec)


def without_creates(actions: list[Action]) -> list[Action]:
    """The actions but the worker pods' creation: while the pool's keys' Secret
    is not written, a new pod would wait for it unstarted."""
    return [a for a in actions if not isinstance(a, CreatePod)]


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


def previous_status(body: kopf.Body) -> BridgePoolStatus:
    try:
        return BridgePoolStatus.model_validate(body.get("status") or {})
    except ValidationError:
        return BridgePoolStatus()  # unreadable status: start afresh, pods tell the rest


async def report_failure(
    runtime: Runtime, body: kopf.Body, message: str, result: PassResult
) -> None:
    """Show a failed pass on the pool: Degraded/ReconcileError and one event
    per distinct failure. Best effort: the failure may be the API itself."""
    meta = body.get("metadata", {})
    previous = previous_status(body)
    generation = int(meta.get("generation") or 0)
    now = datetime.now(UTC)
    actions = unplannable(previous, meta["name"], generation, "ReconcileError", message, now)
    try:
        await execute(
            runtime, body, None, actions, body.get("status") or {}, result, previous=previous
        )
    except Exception as err:  # already failing: say so, and keep the loop going
        log.warning(
            "could not report the failed pass on the pool: %s",
            failure_message(err),
            extra={"namespace": meta.get("namespace"), "pool": meta.get("name")},
        )


async def run_pool(
    runtime: Runtime,
    body: kopf.Body,
    pods_by_pool: kopf.Index[Any, Any],
    stopped: Any,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Reconcile one pool until kopf stops the daemon (pool deleted, operator exiting)."""
    meta = body["metadata"]
    key: PoolKey = (meta["namespace"], meta["name"])
    wakeup = runtime.wakeup(key)
    interval = runtime.config.interval_seconds
    failures = 0  # passes failed in a row
    last_failure: str | None = None
    try:
        while not stopped:
            wakeup.clear()
            started = time.perf_counter()
            delay = interval
            result = PassResult()
            try:
                await reconcile(runtime, body, pods_by_pool.get(key, []), datetime.now(UTC), result)
                metrics.RECONCILE_TOTAL.labels("success").inc()
                failures, last_failure = 0, None
            except kopf.TemporaryError as err:
                metrics.RECONCILE_TOTAL.labels("requeue").inc()
                logger.warning(f"pass over {key[0]}/{key[1]} will be retried: {err}")
                delay = float(err.delay or 1.0)
            except Exception as err:
                metrics.RECONCILE_TOTAL.labels("error").inc()
                failures += 1
                delay = failure_delay(interval, failures)
                message = failure_message(err)
                if message != last_failure:  # the traceback once per failure, not per pass
                    logger.exception(f"pass over {key[0]}/{key[1]} failed")
                else:
                    logger.warning(
                        f"pass over {key[0]}/{key[1]} failed again ({failures} in a row, "
                        f"next in {delay:g} s): {message}"
                    )
                last_failure = message
                await report_failure(runtime, body, message, result)
            finally:
                metrics.RECONCILE_TIME.observe(time.perf_counter() - started)
            if result.pods_changed or result.status_written_over is not None:
                await settle(runtime, body, pods_by_pool, key, result, stopped)
            if (result.pods_changed or result.sessions_moved) and not failures:
                continue  # plan again at once from the new pods
            if await next_wakeup(wakeup, stopped, delay):
                await asyncio.sleep(0.2)  # gather a burst of pod events into one pass
    finally:
        runtime.wakeups.pop(key, None)
        runtime.access.forget(key)
        metrics.forget_pool(*key)
        log.info(
            "stopped reconciling the pool",
            extra={"namespace": key[0], "pool": key[1], "why": str(stopped.reason or "cancelled")},
        )


def failure_delay(interval: float, failures: int) -> float:
    """Seconds before the next pass after ``failures`` failed passes in a row:
    the interval, doubling per failure, at most ``MAX_FAILURE_DELAY_SECONDS``.
    A change of the pool or its pods still wakes the loop at once."""
    # No jitter: one operator retries alone. A failing pool is never passed over
    # more often than a healthy one.
    cap = max(interval, MAX_FAILURE_DELAY_SECONDS)
    return backoff_seconds(failures, base=interval, cap=cap)


async def next_wakeup(wakeup: asyncio.Event, stopped: Any, delay: float) -> bool:
    """Wait for a wake-up, kopf stopping the daemon, or ``delay``; whether
    it was a wake-up. Returning on stop lets the daemon end between passes
    rather than be cancelled in the middle of one."""
    woken = asyncio.ensure_future(wakeup.wait())
    stopping = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({woken, stopping}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
        stopping.cancel()
    return wakeup.is_set() and not stopped


async def settle(
    runtime: Runtime,
    body: kopf.Body,
    pods_by_pool: kopf.Index[Any, Any],
    key: PoolKey,
    result: PassResult,
    stopped: Any,
) -> None:
    """Wait until kopf's views (the pool's live body, the pod index) show this
    pass's changes, so the next pass plans from them; or until kopf stops the
    daemon (there is no next pass then)."""
    deadline = time.monotonic() + runtime.config.settle_timeout_seconds
    while time.monotonic() < deadline:
        if stopped or pass_visible(result, body, pods_by_pool.get(key, [])):
            return
        await asyncio.sleep(0.05)
    log.warning("kopf's views did not show the last pass's changes of %s/%s in time", *key)

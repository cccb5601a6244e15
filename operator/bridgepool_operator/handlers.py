"""The imperative shell: observe a pool's pods and workers, call the planner,
execute its actions. ``main.py`` wires these to kopf's decorators.

One long-lived task per BridgePool (a kopf daemon) runs the passes, so two
passes over the same pool never overlap. It wakes every ``interval`` seconds
and whenever one of the pool's pods changes or the pool's spec does.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import aiohttp
import kopf
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from bridgepool import labels
from bridgepool.protocol import WorkerStats
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus

from . import metrics
from .drain import drain_annotations
from .observe import ObservedWorker, observe_pod, stats_url
from .planner import (
    Action,
    CreatePod,
    DeletePod,
    MarkDraining,
    Pool,
    UpdateStatus,
    plan,
    unplannable,
)
from .pods import PoolRef, build_worker_pod, refusal_message
from .status import EmitEvent, after_creates

log = logging.getLogger("bridgepool.operator")

PoolKey = tuple[str, str]  # (namespace, pool name)


class EventPoster(Protocol):
    def __call__(self, body: kopf.Body, /, *, type: str, reason: str, message: str) -> None: ...


PREFIX = "BRIDGEPOOL_OPERATOR_"
# Longest wait between passes over a pool whose passes keep failing.
MAX_FAILURE_DELAY_SECONDS = 60.0
# How long kopf waits for a signalled pool loop to end before it reschedules.
INSTANT_EXIT_SECONDS = 2.0


@dataclass(frozen=True)
class OperatorConfig:
    """Operator settings, from BRIDGEPOOL_OPERATOR_* environment variables."""

    interval_seconds: float = 5.0
    stats_timeout_seconds: float = 1.0
    # How long to wait for the pod index to show the pass's own changes
    # before the next pass plans again (so no pod is created twice).
    settle_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> OperatorConfig:
        return cls(
            interval_seconds=float(env.get(PREFIX + "INTERVAL_SECONDS", cls.interval_seconds)),
            stats_timeout_seconds=float(
                env.get(PREFIX + "STATS_TIMEOUT_SECONDS", cls.stats_timeout_seconds)
            ),
            settle_timeout_seconds=float(
                env.get(PREFIX + "SETTLE_TIMEOUT_SECONDS", cls.settle_timeout_seconds)
            ),
        )


@dataclass
class Runtime:
    """What the handlers share, kept in kopf's memo (no module globals)."""

    config: OperatorConfig
    api: k8s.ApiClient
    http: aiohttp.ClientSession
    wakeups: dict[PoolKey, asyncio.Event] = field(default_factory=dict)
    # Posts an event on the pool: kopf's poster, or a recorder in a test that
    # runs passes without kopf.
    post_event: EventPoster = kopf.event

    def wakeup(self, key: PoolKey) -> asyncio.Event:
        return self.wakeups.setdefault(key, asyncio.Event())


# -- start-up and clean-up -------------------------------------------------------


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


async def start(memo: kopf.Memo, config: OperatorConfig) -> None:
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        await k8s_config.load_kube_config()
    timeout = aiohttp.ClientTimeout(total=config.stats_timeout_seconds)
    memo.runtime = Runtime(
        config=config, api=k8s.ApiClient(), http=aiohttp.ClientSession(timeout=timeout)
    )


async def stop(memo: kopf.Memo) -> None:
    runtime: Runtime | None = getattr(memo, "runtime", None)
    if runtime is not None:
        await runtime.http.close()
        await runtime.api.close()


# -- index and wake-ups ------------------------------------------------------------


def owner_pool(meta: Mapping[str, Any]) -> str | None:
    """The BridgePool that controls a pod, from its owner reference."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == labels.KIND and ref.get("apiVersion", "").startswith(labels.GROUP):
            return str(ref["name"])
    return None


def index_pod(namespace: str, meta: Mapping[str, Any], body: Mapping[str, Any]) -> dict[Any, Any]:
    """Index entry: (namespace, pool) -> the parts of the pod the planner reads."""
    pool = owner_pool(meta)
    if pool is None:
        return {}
    slim = {
        "metadata": {
            k: meta.get(k)
            for k in (
                "name",
                "labels",
                "annotations",
                "creationTimestamp",
                "deletionTimestamp",
            )
        },
        # The worker's port, if the template names its own (stats_url reads it).
        "spec": {
            "containers": [
                {"ports": c.get("ports")} for c in (body.get("spec") or {}).get("containers") or []
            ]
        },
        "status": dict(body.get("status") or {}),
    }
    return {(namespace, pool): slim}


def wake_for_pod(runtime: Runtime, namespace: str, meta: Mapping[str, Any]) -> None:
    pool = owner_pool(meta)
    if pool is not None:
        runtime.wakeup((namespace, pool)).set()


def wake_for_pool(
    runtime: Runtime, namespace: str, name: str, meta: Mapping[str, Any], status: Mapping[str, Any]
) -> None:
    # Our own status writes also arrive here; only a new spec needs a pass now.
    if meta.get("generation") != status.get("observedGeneration"):
        runtime.wakeup((namespace, name)).set()


# -- observation -----------------------------------------------------------------


async def fetch_stats(runtime: Runtime, pod: Mapping[str, Any]) -> WorkerStats | None:
    url = stats_url(pod)
    if url is None:
        return None
    try:
        async with runtime.http.get(url) as resp:
            if resp.status != 200:
                return None
            return WorkerStats.model_validate(await resp.json())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


async def observe(runtime: Runtime, pods: Iterable[Mapping[str, Any]]) -> list[ObservedWorker]:
    pods = list(pods)
    stats = await asyncio.gather(*(fetch_stats(runtime, p) for p in pods))
    return [observe_pod(p, s) for p, s in zip(pods, stats, strict=True)]


# -- one pass --------------------------------------------------------------------


@dataclass
class PassResult:
    """What a pass changed, so the next one waits until it can see it."""

    created: set[str] = field(default_factory=set)
    drained: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)
    # The pool's resourceVersion the pass planned from, when it wrote a new
    # status: the next pass must plan from a newer pool (its own status), or
    # it would repeat the decisions and events of this one.
    status_written_over: str | None = None

    @property
    def pods_changed(self) -> bool:
        return bool(self.created or self.drained or self.deleted)


def pass_visible(
    result: PassResult, pool: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]
) -> bool:
    """Whether the pool object and the pod index reflect the pass's own changes yet."""
    if result.status_written_over is not None and (
        pool.get("metadata", {}).get("resourceVersion") == result.status_written_over
    ):
        return False
    seen: dict[str, Mapping[str, Any]] = {p["metadata"]["name"]: p["metadata"] for p in pods}
    if any(name not in seen for name in result.created):
        return False
    for name in result.drained:
        annotations = (seen.get(name) or {}).get("annotations") or {}
        if name in seen and labels.ANNOTATION_DRAINING not in annotations:
            return False
    return all(name not in seen or seen[name].get("deletionTimestamp") for name in result.deleted)


def invalid_spec_message(err: ValidationError) -> str:
    """What is wrong with a spec, for a human: each problem with its field.
    Our own validators' messages name their fields already."""
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"])
        # pydantic puts "Value error, " before a validator's own message.
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(msg if msg.startswith("spec.") else f"spec.{where}: {msg}" if where else msg)
    return "; ".join(parts)


def failure_message(err: BaseException) -> str:
    """A failed pass's error as one line for the pool's condition and event; the
    same failure gives the same line (no generated pod names)."""
    if isinstance(err, ApiException):
        return f"the API server answered {err.status} {err.reason}: {api_message(err)}"
    return f"{type(err).__name__}: {err}"


def api_message(err: ApiException) -> str:
    """The message of the API server's Status body, without the name of the
    object (a generated pod name differs on every try)."""
    message = str(json_body(err).get("message") or "")
    return re.sub(r'^(\w+) "[^"]*" is ', r"\1 ", message) or str(err.reason)


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
    generation = int(meta.get("generation") or 0)
    previous = previous_status(body)
    try:
        spec = BridgePoolSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        metrics.RECONCILE_TOTAL.labels("invalid").inc()
        message = invalid_spec_message(err)
        actions = unplannable(previous, name, generation, "InvalidSpec", message, now)
        await execute(runtime, body, None, actions, raw_status, result, previous=previous)
        return
    workers = await observe(runtime, pods)
    actions = plan(Pool(name, generation, spec, previous), workers, now)
    await execute(runtime, body, spec, actions, raw_status, result, previous=previous)


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


def json_body(err: ApiException) -> dict[str, Any]:
    """The API server's Status body of a refused request ({} when it is not JSON)."""
    try:
        body = json.loads(err.body or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _transient(err: ApiException) -> bool:
    return err.status in (409, 429) or err.status >= 500


async def execute(
    runtime: Runtime,
    body: kopf.Body,
    spec: BridgePoolSpec | None,
    actions: list[Action],
    raw_status: Mapping[str, Any],
    result: PassResult,
    *,
    previous: BridgePoolStatus,
) -> None:
    """Carry out the actions in order, recording each change in ``result`` as
    it is made: when an action fails, the next pass still waits to see the
    pods the earlier ones created, and does not create them again.

    A worker pod the API server refuses (an invalid or unknown field in the
    template) fails no pass: the pass makes no more pods, and the status it
    writes says why (``previous`` is the status the actions were planned from)."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    # The generated client's annotations are loose (models vs dicts); keep it dynamic.
    core: Any = k8s.CoreV1Api(runtime.api)
    started = datetime.now(UTC)
    created_revision: str | None = None  # the revision of the pods this pass tried to make
    refused: str | None = None

    def announce(type: str, reason: str, message: str) -> None:
        """An event on the pool, and the same as a log line."""
        level = logging.WARNING if type == "Warning" else logging.INFO
        log.log(level, message, extra={"namespace": namespace, "pool": name, "reason": reason})
        runtime.post_event(body, type=type, reason=reason, message=message)

    try:
        for action in actions:
            if isinstance(action, CreatePod):
                assert spec is not None
                created_revision = action.revision
                if refused is not None:
                    continue  # the same template: refused again
                pod = build_worker_pod(PoolRef(name, namespace, meta["uid"]), spec, action.revision)
                try:
                    # Strict: a field the API server does not know (a typo in the
                    # template) is refused, not silently dropped.
                    made = await core.create_namespaced_pod(
                        namespace, pod, field_validation="Strict"
                    )
                except ApiException as err:
                    if err.status not in (400, 422):
                        raise
                    refused = refusal_message(json_body(err))
                    metrics.POD_ACTIONS_TOTAL.labels("create-refused", action.reason).inc()
                    continue
                result.created.add(made.metadata.name)
                metrics.POD_ACTIONS_TOTAL.labels("create", action.reason).inc()
                announce(
                    type="Normal",
                    reason="WorkerCreated",
                    message=f"{made.metadata.name} (revision {action.revision}, {action.reason})",
                )
            elif isinstance(action, MarkDraining):
                patch = {"metadata": {"annotations": drain_annotations(started, action.reason)}}
                try:
                    await core.patch_namespaced_pod(action.pod, namespace, patch)
                except ApiException as err:
                    if err.status != 404:
                        raise
                result.drained.add(action.pod)
                metrics.POD_ACTIONS_TOTAL.labels("drain", action.reason).inc()
                unhealthy = action.reason == "unhealthy"
                announce(
                    type="Warning" if unhealthy else "Normal",
                    reason="WorkerUnhealthy" if unhealthy else "WorkerDraining",
                    message=f"{action.pod} draining ({action.reason}): {action.message}",
                )
            elif isinstance(action, DeletePod):
                try:
                    await core.delete_namespaced_pod(
                        action.pod, namespace, grace_period_seconds=action.grace_seconds
                    )
                except ApiException as err:
                    if err.status != 404:
                        raise
                result.deleted.add(action.pod)
                metrics.POD_ACTIONS_TOTAL.labels("delete", action.reason).inc()
                announce("Normal", "WorkerDeleted", f"{action.pod}: {action.message}")
            elif isinstance(action, EmitEvent):
                announce(action.type, action.reason, action.message)
            elif isinstance(action, UpdateStatus):
                status = action.status
                if created_revision is not None:
                    status, events = after_creates(
                        previous,
                        status,
                        revision=created_revision,
                        refused=refused,
                        generation=int(meta.get("generation") or 0),
                        now=started,
                    )
                    for event in events:
                        announce(event.type, event.reason, event.message)
                if await write_status(runtime, namespace, name, status, raw_status):
                    result.status_written_over = meta.get("resourceVersion")
                record_gauges(namespace, name, status)
    except ApiException as err:
        if _transient(err):
            raise kopf.TemporaryError(f"API: {err.status} {err.reason}", delay=2) from err
        raise
    except aiohttp.ClientError as err:
        raise kopf.TemporaryError(f"API unreachable: {err}", delay=2) from err


async def write_status(
    runtime: Runtime,
    namespace: str,
    name: str,
    status: BridgePoolStatus,
    raw_status: Mapping[str, Any],
) -> bool:
    """Write the pool's status if it changed; whether it was written."""
    wire = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    if wire == dict(raw_status):
        return False  # unchanged: no write, no watch event
    # Merge-patch replaces lists whole; fields that went away are nulled.
    patch: dict[str, Any] = {k: None for k in raw_status if k not in wire}
    patch.update(wire)
    custom: Any = k8s.CustomObjectsApi(runtime.api)
    await custom.patch_namespaced_custom_object_status(
        labels.GROUP,
        labels.VERSION,
        namespace,
        labels.PLURAL,
        name,
        {"status": patch},
        _content_type="application/merge-patch+json",
    )
    return True


def record_gauges(namespace: str, name: str, status: BridgePoolStatus) -> None:
    metrics.POOL_DESIRED.labels(namespace, name).set(status.desired_replicas)
    metrics.POOL_READY.labels(namespace, name).set(status.ready_replicas)
    if status.utilization is not None:
        metrics.POOL_UTILIZATION.labels(namespace, name).set(status.utilization / 100.0)


# -- the per-pool loop -----------------------------------------------------------


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
            if result.pods_changed and not failures:
                continue  # plan again at once from the new pods
            if await next_wakeup(wakeup, stopped, delay):
                await asyncio.sleep(0.2)  # gather a burst of pod events into one pass
    finally:
        runtime.wakeups.pop(key, None)
        metrics.forget_pool(*key)
        log.info(
            "stopped reconciling the pool",
            extra={"namespace": key[0], "pool": key[1], "why": str(stopped.reason or "cancelled")},
        )


def failure_delay(interval: float, failures: int) -> float:
    """Seconds before the next pass after ``failures`` failed passes in a row:
    the interval, doubling per failure, at most ``MAX_FAILURE_DELAY_SECONDS``.
    A change of the pool or its pods still wakes the loop at once."""
    return min(interval * 2.0 ** (failures - 1), max(interval, MAX_FAILURE_DELAY_SECONDS))


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

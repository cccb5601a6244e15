"""Carry out a pass's actions on the API server: the planner's workers are
pods (created, annotated draining, deleted), its events the pool's events,
its status the pool's status; and keep the objects beside the pool (its
disruption budget, which follows the desired size, its keys' Secret, its
NetworkPolicy)."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from bridgepool import labels
from bridgepool.moves.mover import move_off
from bridgepool.names import PoolRef as PoolName
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus
from bridgepool_planner.passes import PassResult, RetrySoon
from bridgepool_planner.planner import (
    Action,
    CreateWorker,
    DrainWorker,
    MoveSessions,
    StopWorker,
    UpdateStatus,
)
from bridgepool_planner.status import (
    EmitEvent,
    after_creates,
    created_event,
    drain_event,
    move_events,
    stop_event,
)

from . import metrics
from .access import policy_peers, wanted_access
from .observe import drain_annotations
from .pods import (
    PoolRef,
    budget_min_available,
    build_budget,
    build_worker_pod,
    refusal_message,
)
from .runtime import Runtime

log = logging.getLogger("bridgepool.operator")


def json_body(err: ApiException) -> dict[str, Any]:
    """The API server's Status body of a refused request ({} when it is not JSON)."""
    try:
        body = json.loads(err.body or "")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def api_message(err: ApiException) -> str:
    """The message of the API server's Status body, without the name of the
    object (a generated pod name differs on every try)."""
    message = str(json_body(err).get("message") or "")
    return re.sub(r'^(\w+) "[^"]*" is ', r"\1 ", message) or str(err.reason)


def failure_message(err: BaseException) -> str:
    """A failed pass's error as one line for the pool's condition and event; the
    same failure gives the same line (no generated pod names)."""
    if isinstance(err, ApiException):
        return f"the API server answered {err.status} {err.reason}: {api_message(err)}"
    return f"{type(err).__name__}: {err}"


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
    pool_ref = PoolRef(name, namespace, meta["uid"])
    core: Any = k8s.CoreV1Api(runtime.api)
    started = datetime.now(UTC)
    created_revision: str | None = None  # the revision of the pods this pass tried to make
    refused: str | None = None

    def announce(type: str, reason: str, message: str) -> None:
        """An event on the pool, and the same as a log line."""
        level = logging.WARNING if type == "Warning" else logging.INFO
        log.log(level, message, extra={"namespace": namespace, "pool": name, "reason": reason})
        runtime.post_event(body, type=type, reason=reason, message=message)

    def tell(event: EmitEvent) -> None:
        announce(event.type, event.reason, event.message)

    try:
        for action in actions:
            if isinstance(action, CreateWorker):
                assert spec is not None
                created_revision = action.revision
                if refused is not None:
                    continue  # the same template: refused again
                pod = build_worker_pod(pool_ref, spec, action.revision)
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
                    metrics.METRICS.worker_actions.labels("create-refused", action.reason).inc()
                    continue
                result.created.add(made.metadata.name)
                metrics.METRICS.worker_actions.labels("create", action.reason).inc()
                tell(created_event(made.metadata.name, action.revision, action.reason))
            elif isinstance(action, DrainWorker):
                patch = {"metadata": {"annotations": drain_annotations(started, action.reason)}}
                try:
                    await core.patch_namespaced_pod(action.worker, namespace, patch)
                except ApiException as err:
                    if err.status != 404:
                        raise
                result.drained.add(action.worker)
                metrics.METRICS.worker_actions.labels("drain", action.reason).inc()
                tell(drain_event(action.worker, action.reason, action.message))
            elif isinstance(action, StopWorker):
                try:
                    await core.delete_namespaced_pod(
                        action.worker, namespace, grace_period_seconds=action.grace_seconds
                    )
                except ApiException as err:
                    if err.status != 404:
                        raise
                result.stopped.add(action.worker)
                metrics.METRICS.worker_actions.labels("delete", action.reason).inc()
                tell(stop_event(action.worker, action.message))
            elif isinstance(action, MoveSessions):
                await move_sessions(runtime, namespace, name, action, result, tell)
            elif isinstance(action, EmitEvent):
                tell(action)
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
                        tell(event)
                if spec is not None:
                    # The disruption budget follows the desired size.
                    budget = budget_min_available(spec, status.desired_replicas)
                    if previous.budget_min_available != budget:
                        await apply_budget(runtime, build_budget(pool_ref, budget))
                    status = status.model_copy(update={"budget_min_available": budget})
                if await write_status(runtime, namespace, name, status, raw_status):
                    result.status_written_over = meta.get("resourceVersion")
                metrics.METRICS.record_status(namespace, name, status)
    except ApiException as err:
        if _transient(err):
            raise RetrySoon(f"API: {err.status} {err.reason}", delay=2) from err
        raise
    except aiohttp.ClientError as err:
        raise RetrySoon(f"API unreachable: {err}", delay=2) from err


async def move_sessions(
    runtime: Runtime,
    namespace: str,
    pool: str,
    action: MoveSessions,
    result: PassResult,
    tell: Callable[[EmitEvent], None],
) -> None:
    """Move what sessions the budget allows off a draining worker; say what
    moved, and what cannot (once per session: the worker remembers it, and
    lists it as unmovable from then on)."""
    report = await move_off(
        runtime.workers((namespace, pool)),
        action.url,
        action.targets,
        budget_seconds=runtime.config.move_budget_seconds,
        step_timeout=runtime.config.move_step_timeout_seconds,
    )
    result.sessions_moved += len(report.moved)
    for outcome, count in report.counts().items():
        metrics.METRICS.session_moves.labels(outcome).inc(count)
    for event in move_events(action.worker, report.moved, report.cannot_move):
        tell(event)
    for session_id, why in report.failed.items():
        log.info(
            "session not moved this pass: %s",
            why,
            extra={"namespace": namespace, "worker": action.worker, "session_id": session_id},
        )


async def apply_budget(runtime: Runtime, budget: dict[str, Any]) -> None:
    """Make the pool's PodDisruptionBudget say what ``budget`` says."""
    meta = budget["metadata"]
    policy: Any = k8s.PolicyV1Api(runtime.api)
    try:
        await policy.patch_namespaced_pod_disruption_budget(meta["name"], meta["namespace"], budget)
    except ApiException as err:
        if err.status != 404:
            raise
        await policy.create_namespaced_pod_disruption_budget(meta["namespace"], budget)
    log.info(
        "disruption budget: at least %d ready workers",
        budget["spec"]["minAvailable"],
        extra={"namespace": meta["namespace"], "pool": meta["name"]},
    )


# The event reason of a failed write of a pool's keys' Secret or NetworkPolicy.
ACCESS_FAILED = "FailedWorkerAccess"


async def keep_access(runtime: Runtime, body: kopf.Body, spec: BridgePoolSpec) -> bool:
    """Write the pool's keys' Secret and its NetworkPolicy when they are due
    (``access.py``); whether the Secret is there for new worker pods to mount.

    A failed write fails no pass: it is logged and told on the pool (once per
    distinct failure), the pass goes on, and it makes no worker pods until this
    process has written the pool's Secret (a pod would wait for it unstarted)."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    key = (namespace, name)
    release = runtime.keys.master.keys()
    keys = replace(runtime.keys.of(PoolName(namespace, name)), scrape=release.scrape)
    wanted = wanted_access(
        PoolRef(name, namespace, meta["uid"]), keys, spec, policy_peers(runtime.config)
    )
    now = time.monotonic()
    if not runtime.access.due(key, wanted.fingerprint, now):
        return True
    try:
        await put_object(runtime, wanted.secret)
        runtime.access.keys_written(key)
        if wanted.policy is None:
            await remove_object(
                runtime, "NetworkPolicy", namespace, labels.network_policy_name(name)
            )
        else:
            await put_object(runtime, wanted.policy)
    except (ApiException, aiohttp.ClientError, TimeoutError, ForeignObject) as err:
        message = failure_message(err)
        if runtime.access.failed(key, message):
            log.warning(
                "could not write the workers' keys or network policy: %s",
                message,
                extra={"namespace": namespace, "pool": name},
            )
            runtime.post_event(
                body,
                type="Warning",
                reason=ACCESS_FAILED,
                message=f"the workers' keys or network policy not written: {message}",
            )
        return runtime.access.has_keys(key)
    runtime.access.written(key, wanted.fingerprint, now)
    log.info(
        "wrote the workers' keys and network policy",
        extra={"namespace": namespace, "pool": name, "network_policy": wanted.policy is not None},
    )
    return True


class ForeignObject(Exception):
    """An object of the name the operator would use exists, and it did not make it."""


@dataclass(frozen=True)
class ObjectCalls:
    """The API calls of one kind of object the operator keeps beside a pool."""

    create: Any
    read: Any
    replace: Any
    delete: Any


def object_calls(runtime: Runtime, kind: str) -> ObjectCalls:
    if kind == "Secret":
        core: Any = k8s.CoreV1Api(runtime.api)
        return ObjectCalls(
            core.create_namespaced_secret,
            core.read_namespaced_secret,
            core.replace_namespaced_secret,
            core.delete_namespaced_secret,
        )
    assert kind == "NetworkPolicy", kind
    networking: Any = k8s.NetworkingV1Api(runtime.api)
    return ObjectCalls(
        networking.create_namespaced_network_policy,
        networking.read_namespaced_network_policy,
        networking.replace_namespaced_network_policy,
        networking.delete_namespaced_network_policy,
    )


async def read_ours(
    runtime: Runtime, calls: ObjectCalls, kind: str, namespace: str, name: str
) -> dict[str, Any]:
    """An object the operator made, as a dict; raises :class:`ForeignObject`
    when someone else made it."""
    found: dict[str, Any] = runtime.api.sanitize_for_serialization(
        await calls.read(name, namespace)
    )
    made_by = ((found.get("metadata") or {}).get("labels") or {}).get(labels.LABEL_MANAGED_BY)
    if made_by != labels.MANAGED_BY:
        raise ForeignObject(
            f"{kind} {namespace}/{name} exists and {labels.MANAGED_BY} did not make it: "
            "delete or rename it"
        )
    return found


def differs(found: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether an object says other than ``wanted``, in what the operator writes."""
    have, meta = found.get("metadata") or {}, wanted["metadata"]
    body = {k: v for k, v in wanted.items() if k not in ("apiVersion", "kind", "metadata")}
    return (
        any(found.get(k) != v for k, v in body.items())
        or (have.get("labels") or {}) != meta["labels"]
        or (have.get("ownerReferences") or []) != meta["ownerReferences"]
    )


async def put_object(runtime: Runtime, wanted: dict[str, Any]) -> None:
    """Create ``wanted``; when it exists, make it say the same (read it, and
    replace it if it differs). One the operator did not make is left alone."""
    kind, meta = wanted["kind"], wanted["metadata"]
    calls = object_calls(runtime, kind)
    try:
        await calls.create(meta["namespace"], wanted)
        return
    except ApiException as err:
        if err.status != 409:
            raise
    found = await read_ours(runtime, calls, kind, meta["namespace"], meta["name"])
    if differs(found, wanted):
        # Replaced only as read: a change in between makes this a 409, tried again later.
        version = found["metadata"]["resourceVersion"]
        update = {**wanted, "metadata": {**meta, "resourceVersion": version}}
        await calls.replace(meta["name"], meta["namespace"], update)


async def remove_object(runtime: Runtime, kind: str, namespace: str, name: str) -> None:
    """Delete the object the operator made of that kind and name, if there is one."""
    calls = object_calls(runtime, kind)
    try:
        await read_ours(runtime, calls, kind, namespace, name)
        await calls.delete(name, namespace)
    except ApiException as err:
        if err.status != 404:
            raise
    except ForeignObject:
        return  # not ours to delete


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


def spec_json(spec: BridgePoolSpec) -> str:
    """A spec as the last-valid-spec annotation holds it: compact JSON, defaults filled in."""
    return spec.model_dump_json(by_alias=True, exclude_none=True)


async def remember_valid_spec(runtime: Runtime, body: kopf.Body, spec: BridgePoolSpec) -> None:
    """Keep ``spec`` on the pool as its last valid spec, if it is not there yet."""
    meta = body["metadata"]
    wire = spec_json(spec)
    if (meta.get("annotations") or {}).get(labels.ANNOTATION_LAST_VALID_SPEC) == wire:
        return
    custom: Any = k8s.CustomObjectsApi(runtime.api)
    try:
        await custom.patch_namespaced_custom_object(
            labels.GROUP,
            labels.VERSION,
            meta["namespace"],
            labels.PLURAL,
            meta["name"],
            {"metadata": {"annotations": {labels.ANNOTATION_LAST_VALID_SPEC: wire}}},
            _content_type="application/merge-patch+json",
        )
    except (ApiException, aiohttp.ClientError) as err:  # the next pass tries again
        log.warning(
            "could not keep the pool's last valid spec: %s",
            failure_message(err),
            extra={"namespace": meta["namespace"], "pool": meta["name"]},
        )

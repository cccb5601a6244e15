"""The reconcile planner: ``(pool, observed workers, now) -> actions``.

Pure and level-based: it derives everything from the pods (labels,
annotations, phase, conditions, restart counts, creation time), the
workers' stats and the pool's last status, so the same observed state
always gives the same actions, whether or not the operator restarted.

One pass, in order:

1. Workers being deleted are left alone. Draining workers are out of the
   pool; each is deleted once it holds no sessions and no calls, once it is
   gone unready with nothing to report, or once the drain timeout passed.
2. Dead workers (pod failed; crash-looping; restarted too often; unready
   for ``replaceAfterFailures`` health intervals after having been ready, or
   never ready ``startupTimeoutSeconds`` after their start, unless the
   worker itself answers that it is serving) are drained at once: they
   serve nothing, so that costs no availability, and their replacement is
   created in the same pass.
3. The desired size comes from ``scaling.decide``.
4. Workers of the current revision that are not due for recycling are
   "updated"; the rest ("outdated": old revision, recycling due, too many
   restarts while still serving) are replaced gracefully.
5. Too many updated workers: the surplus is drained in victim order.
6. Missing updated workers are created, at most ``maxSurge`` above the
   desired size in total.
7. Outdated workers are drained in victim order while at least
   ``desired - maxUnavailable`` ready workers remain (unready ones at once).

Victim order (who is drained first): not ready first, then fewest
sessions, then old revision, then youngest.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bridgepool.labels import pool_selector
from bridgepool.protocol import WorkerState
from bridgepool.spec import (
    MAX_WORKER_SUMMARIES,
    AutoscalingStatus,
    BridgePoolSpec,
    BridgePoolStatus,
    Condition,
    ConditionType,
    WorkerSummary,
)

from .observe import CRASH_LOOP, ObservedWorker, format_time
from .pods import revision_of
from .scaling import Load, ScalingDecision, decide

DrainReason = Literal["scale-down", "rollout", "unhealthy", "recycle"]
CreateReason = Literal["scale-up", "rollout", "unhealthy"]
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class CreatePod:
    revision: str
    reason: CreateReason


@dataclass(frozen=True)
class MarkDraining:
    pod: str
    reason: DrainReason
    message: str


@dataclass(frozen=True)
class DeletePod:
    pod: str
    grace_seconds: int
    reason: str


@dataclass(frozen=True)
class EmitEvent:
    type: EventType
    reason: str
    message: str


@dataclass(frozen=True)
class UpdateStatus:
    status: BridgePoolStatus


Action = CreatePod | MarkDraining | DeletePod | EmitEvent | UpdateStatus


@dataclass(frozen=True)
class Pool:
    """The pool as the planner needs it."""

    name: str
    generation: int
    spec: BridgePoolSpec
    status: BridgePoolStatus  # as last written: conditions and autoscaler memory


def drain_order(workers: Sequence[ObservedWorker], revision: str) -> list[ObservedWorker]:
    """Workers in victim order: the first is drained first."""

    def key(w: ObservedWorker) -> tuple[bool, float, bool, float]:
        # A ready worker that did not report stats may hold sessions: last among equals.
        sessions = w.sessions if w.sessions is not None else (0 if not w.ready else math.inf)
        return (w.ready, float(sessions), w.revision == revision, -w.created_at.timestamp())

    return sorted(workers, key=key)


def death_reason(w: ObservedWorker, spec: BridgePoolSpec, now: datetime) -> str | None:
    """Why a worker must be replaced right away, or None."""
    if w.phase in ("Failed", "Succeeded"):
        return f"pod phase {w.phase}"
    if w.ready:
        return None
    if w.waiting_reason == CRASH_LOOP:
        return f"{CRASH_LOOP} after {w.restart_count} restarts"
    if w.restart_count >= spec.health.max_restarts:
        return f"{w.restart_count} restarts"
    if w.phase != "Running" or w.config_problem:
        return None
    waited = w.not_ready_for(now)
    if w.never_ready:
        # Starting is slow on a busy node; replacing a starting worker adds load.
        limit = spec.health.startup_timeout_seconds
        why = f"not ready {int(waited)}s after its start"
    else:
        limit = spec.health.interval_seconds * spec.health.replace_after_failures
        why = f"not ready for {int(waited)}s"
    if waited < limit or says_it_serves(w):
        return None
    return why


def says_it_serves(w: ObservedWorker) -> bool:
    """The worker answered the operator's stats call and reports itself ready
    or busy. When the kubelet's readiness checks fail all the same, they are
    not getting through in time (a node short of CPU); a new pod on that node
    would fare no better, and starting one adds to the load."""
    return w.stats is not None and w.stats.state in (WorkerState.READY, WorkerState.BUSY)


def is_starting(w: ObservedWorker, spec: BridgePoolSpec, now: datetime) -> bool:
    """Not ready yet, but not known to be sick either: pending, or running and
    never ready since its start, within the startup timeout, without the worker
    reporting itself degraded. A pool whose new workers are starting is not
    degraded."""
    if w.ready:
        return False
    if w.phase == "Pending":
        return True
    reported_degraded = w.stats is not None and w.stats.state == WorkerState.DEGRADED
    return (
        w.phase == "Running"
        and w.never_ready
        and not reported_degraded
        and w.not_ready_for(now) < spec.health.startup_timeout_seconds
    )


def outdated_reason(w: ObservedWorker, spec: BridgePoolSpec, revision: str) -> str | None:
    """Why a serving worker should be replaced gracefully, or None."""
    if w.revision != revision:
        return f"revision {w.revision or '?'} -> {revision}"
    if w.stats is not None and w.stats.recycle.due:
        return f"recycling due: {w.stats.recycle.reason or 'limit reached'}"
    if w.restart_count >= spec.health.max_restarts:
        return f"{w.restart_count} restarts"
    return None


def drain_done(w: ObservedWorker, spec: BridgePoolSpec, now: datetime) -> str | None:
    """Why a draining worker may be deleted now, or None."""
    assert w.draining_since is not None
    if w.stats is not None and w.stats.sessions == 0 and w.stats.in_flight == 0:
        return "drained: no sessions left"
    if w.stats is None and not w.ready:
        return "drained: worker not serving"
    waited = (now - w.draining_since).total_seconds()
    if waited >= spec.rollout.drain_timeout_seconds:
        return f"drain timeout ({spec.rollout.drain_timeout_seconds}s) passed"
    return None


def measure_load(workers: Sequence[ObservedWorker]) -> Load:
    reporting = [w for w in workers if w.ready and not w.draining and w.stats is not None]
    return Load(
        in_flight=sum(w.stats.in_flight for w in reporting if w.stats),
        capacity=sum(w.stats.capacity for w in reporting if w.stats),
        workers=len(reporting),
    )


def plan(pool: Pool, workers: Sequence[ObservedWorker], now: datetime) -> list[Action]:
    """Everything to do this pass to move the pool toward its spec."""
    spec = pool.spec
    revision = revision_of(spec)
    grace = spec.rollout.termination_grace_period_seconds
    actions: list[Action] = []

    live = [w for w in workers if not w.deleting]
    draining = [w for w in live if w.draining]
    active = [w for w in live if not w.draining]

    # 1. Finished drains.
    for w in draining:
        why = drain_done(w, spec, now)
        if why is not None:
            actions.append(DeletePod(w.name, grace, why))

    # 2. Dead workers leave at once.
    dead = {w.name: why for w in active if (why := death_reason(w, spec, now)) is not None}
    for w in active:
        if w.name in dead:
            actions.append(MarkDraining(w.name, "unhealthy", dead[w.name]))
    serving = [w for w in active if w.name not in dead]

    # 3. Size.
    current = (
        pool.status.desired_replicas
        if pool.status.observed_generation is not None
        else spec.min_replicas
    )
    decision = decide(
        spec, current, pool.status.autoscaling.recommendations, measure_load(live), now
    )
    desired = decision.desired

    # 4. Updated vs outdated.
    outdated = {
        w.name: why for w in serving if (why := outdated_reason(w, spec, revision)) is not None
    }
    updated = [w for w in serving if w.name not in outdated]
    old = [w for w in serving if w.name in outdated]

    # 5. Surplus of updated workers.
    if len(updated) > desired:
        surplus = drain_order(updated, revision)[: len(updated) - desired]
        for w in surplus:
            actions.append(MarkDraining(w.name, "scale-down", f"pool scaled to {desired}"))
        kept_names = {w.name for w in updated} - {w.name for w in surplus}
        updated = [w for w in updated if w.name in kept_names]

    # 6. Missing updated workers, within the surge budget.
    room = desired + spec.rollout.max_surge - (len(updated) + len(old))
    to_create = max(0, min(desired - len(updated), room))
    why_create: CreateReason = "unhealthy" if dead else "rollout" if old else "scale-up"
    actions.extend(CreatePod(revision, why_create) for _ in range(to_create))

    # 7. Outdated workers go while enough ready workers remain.
    min_ready = max(0, desired - spec.rollout.max_unavailable)
    ready_now = sum(1 for w in updated + old if w.ready)
    for w in drain_order(old, revision):
        if w.ready:
            if ready_now - 1 < min_ready:
                continue
            ready_now -= 1
        why = outdated[w.name]
        reason: DrainReason = (
            "recycle"
            if why.startswith("recycling")
            else "unhealthy"
            if why.endswith("restarts")
            else "rollout"
        )
        actions.append(MarkDraining(w.name, reason, why))

    status = build_status(pool, live, revision, decision, now, dead, to_create)
    actions.extend(transition_events(pool.status, status, decision, current))
    actions.append(UpdateStatus(status))
    return actions


def _state(w: ObservedWorker, dead: bool, starting: bool) -> str:
    if w.deleting:
        return "terminating"
    if w.draining:
        return "draining"
    if dead:
        return "failed"
    if w.ready:
        return w.stats.state.value if w.stats is not None else "ready"
    return "starting" if starting else "degraded"


def _condition(
    prev: BridgePoolStatus,
    type_: ConditionType,
    ok: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> Condition:
    status: Literal["True", "False"] = "True" if ok else "False"
    old = next((c for c in prev.conditions if c.type == type_.value), None)
    since = (
        old.last_transition_time if old is not None and old.status == status else format_time(now)
    )
    return Condition(
        type=type_.value,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )


def build_status(
    pool: Pool,
    live: Sequence[ObservedWorker],
    revision: str,
    decision: ScalingDecision,
    now: datetime,
    dead: dict[str, str],
    creating: int,
) -> BridgePoolStatus:
    spec, prev, gen = pool.spec, pool.status, pool.generation
    active = [w for w in live if not w.draining and w.name not in dead]
    ready = [w for w in active if w.ready]
    updated = [w for w in active if w.revision == revision]
    desired = decision.desired
    load = measure_load(live)
    utilization = None if load.utilization is None else round(load.utilization * 100.0, 1)
    revisions = Counter(w.revision for w in ready)
    current_revision = revisions.most_common(1)[0][0] if revisions else revision

    # Degraded: problems a new pod would not fix, pods failing, or unready workers.
    config = [w for w in active if w.config_problem]
    starting = {w.name for w in live if is_starting(w, spec, now)}
    unready = [w for w in active if not w.ready and w.phase == "Running" and w.name not in starting]
    if config:
        w = config[0]
        degraded = (True, w.waiting_reason or "ConfigProblem", f"{w.name}: {w.waiting_message}")
    elif dead:
        name, why = sorted(dead.items())[0]
        degraded = (True, "WorkerUnhealthy", f"{name}: {why}; replacing")
    elif unready:
        degraded = (True, "WorkersNotReady", ", ".join(sorted(w.name for w in unready)))
    else:
        degraded = (False, "Healthy", "all workers healthy")

    rolling = len(updated) != len(active) or any(w.draining for w in live)
    complete = not rolling and len(updated) == desired and creating == 0
    if complete:
        progressing = (False, "Complete", f"{desired} workers at revision {revision}")
    elif len(updated) != len(active):
        progressing = (True, "RollingOut", f"{len(updated)}/{desired} at revision {revision}")
    elif creating or len(active) < desired:
        progressing = (True, "ScalingUp", f"{len(active)} -> {desired} workers")
    elif any(w.draining for w in live):
        progressing = (True, "Draining", f"{sum(w.draining for w in live)} workers draining")
    else:  # this pass picks the workers to drain
        progressing = (True, "ScalingDown", f"{len(active)} -> {desired} workers")

    ready_ok = len(ready) >= desired
    ready_cond = (
        ready_ok,
        "WorkersReady" if ready_ok else "WorkersNotReady",
        f"{len(ready)}/{desired} workers ready",
    )
    limited: tuple[bool, str, str]
    if decision.limited is not None:
        bound = spec.max_replicas if decision.limited == "AtMaxReplicas" else spec.min_replicas
        limited = (
            True,
            decision.limited,
            f"recommended {decision.recommendation} workers, bounded to {bound}",
        )
    else:
        limited = (False, "WithinBounds", "scaling within minReplicas..maxReplicas")

    conditions = [
        _condition(prev, t, ok, reason, msg, gen, now)
        for t, (ok, reason, msg) in (
            (ConditionType.READY, ready_cond),
            (ConditionType.PROGRESSING, progressing),
            (ConditionType.DEGRADED, degraded),
            (ConditionType.SCALING_LIMITED, limited),
        )
    ]
    if degraded[0]:
        phase = "Degraded"
    elif progressing[0]:
        phase = "Progressing"
    elif ready_ok:
        phase = "Running"
    else:
        phase = "Pending"

    summaries = [
        WorkerSummary(
            name=w.name,
            state=_state(w, w.name in dead, w.name in starting),
            ready=w.ready,
            draining=w.draining,
            sessions=w.sessions,
            in_flight=w.in_flight,
            revision=w.revision,
        )
        for w in sorted(live, key=lambda w: w.name)
    ][:MAX_WORKER_SUMMARIES]

    return BridgePoolStatus(
        replicas=len(live),
        ready_replicas=len(ready),
        updated_replicas=len(updated),
        desired_replicas=desired,
        utilization=utilization,
        current_revision=current_revision,
        update_revision=revision,
        observed_generation=gen,
        selector=pool_selector(pool.name),
        phase=phase,
        workers=summaries,
        conditions=conditions,
        autoscaling=AutoscalingStatus(recommendations=list(decision.recommendations)),
    )


def transition_events(
    prev: BridgePoolStatus, new: BridgePoolStatus, decision: ScalingDecision, current: int
) -> list[EmitEvent]:
    """Events for changes of size and of the Degraded/ScalingLimited conditions."""
    events: list[EmitEvent] = []
    if prev.observed_generation is not None and new.desired_replicas != current:
        events.append(
            EmitEvent(
                "Normal",
                "Scaled",
                f"desired workers {current} -> {new.desired_replicas}"
                + (f" (utilization {new.utilization}%)" if new.utilization is not None else ""),
            )
        )
    before = {c.type: c for c in prev.conditions}
    for cond in new.conditions:
        old = before.get(cond.type)
        changed = old is None or (old.status, old.reason) != (cond.status, cond.reason)
        if not changed or cond.status != "True":
            continue
        if cond.type == ConditionType.DEGRADED.value:
            events.append(EmitEvent("Warning", cond.reason, cond.message))
        elif cond.type == ConditionType.SCALING_LIMITED.value:
            events.append(EmitEvent("Normal", cond.reason, cond.message))
    return events


def invalid_spec_status(
    prev: BridgePoolStatus, name: str, generation: int, message: str, now: datetime
) -> list[Action]:
    """A spec the operator cannot act on: say so, touch no pods."""
    degraded = _condition(
        prev, ConditionType.DEGRADED, True, "InvalidSpec", message, generation, now
    )
    others = [c for c in prev.conditions if c.type != ConditionType.DEGRADED.value]
    status = prev.model_copy(
        update={
            "conditions": [*others, degraded],
            "phase": "Invalid",
            "selector": pool_selector(name),
        }
    )
    actions: list[Action] = []
    old = next((c for c in prev.conditions if c.type == ConditionType.DEGRADED.value), None)
    if old is None or old.reason != "InvalidSpec" or old.message != message:
        actions.append(EmitEvent("Warning", "InvalidSpec", message))
    actions.append(UpdateStatus(status))
    return actions

"""The reconcile planner: ``(pool, observed workers, now) -> actions``.

It speaks of workers, not of pods or processes: the same planner drives
the Kubernetes operator (workers are pods) and ``bridgepool run`` (workers
are processes on one machine). Each executor observes its workers (as
:class:`~bridgepool_planner.workers.ObservedWorker`), names the pool's
revision (a hash of what makes its workers), and carries the actions out.

Pure and level-based: it derives everything from the observed workers
(revision, phase, readiness, drain marks, restarts, creation time), the
workers' stats and the pool's last status, so the same observed state
always gives the same actions, whether or not the executor restarted.

One pass, in order:

1. Workers being stopped are left alone. Draining workers are out of the
   pool; each is stopped once it holds no sessions and no calls, once it is
   gone unready with nothing to report, or once the drain timeout passed.
   Until then its sessions move to workers that stay (``bridgepool.moves.mover``).
2. Dead workers (exited; crash-looping; restarted too often; unready for
   ``replaceAfterFailures`` health intervals after having been ready, or
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
   desired size in total; none while the executor's refusal of the
   current template is being backed off (``status.templateRejection``).
7. Outdated workers are drained in victim order while at least
   ``desired - maxUnavailable`` ready workers remain (unready ones at once).

What the executor keeps beside the workers (on a cluster, the pool's
PodDisruptionBudget, which follows the desired size) is its own.
How a worker is judged is in ``health.py``, the drain (and who is drained
first) in ``drain.py``, the status in ``status.py``, the size in ``scaling.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bridgepool.placement import Target
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus

from .drain import (
    DrainReason,
    StopReason,
    drain_done,
    drain_order,
    move_targets,
)
from .health import Outdated, OutdatedKind, death_reason, outdated_reason
from .scaling import decide, measure_load
from .status import (
    EmitEvent,
    build_status,
    problem_status,
    retry_time,
    transition_events,
)
from .workers import ObservedWorker

# Why a worker is created: the pool grows, or a worker is replaced (it died or
# went missing; a new template; recycling).
CreateReason = Literal["scale-up", "replace", "rollout", "recycle"]

DRAIN_REASON: dict[OutdatedKind, DrainReason] = {
    "rollout": "rollout",
    "recycle": "recycle",
    "restarts": "unhealthy",
}
CREATE_REASON: dict[OutdatedKind, CreateReason] = {
    "rollout": "rollout",
    "recycle": "recycle",
    "restarts": "replace",
}


@dataclass(frozen=True)
class CreateWorker:
    """Start a new worker of ``revision``."""

    revision: str
    reason: CreateReason


@dataclass(frozen=True)
class DrainWorker:
    """Mark a worker draining: no new sessions; it leaves once drained."""

    worker: str
    reason: DrainReason
    message: str


@dataclass(frozen=True)
class StopWorker:
    """Stop a worker, giving it ``grace_seconds`` to finish its calls."""

    worker: str
    grace_seconds: int
    reason: StopReason
    message: str


@dataclass(frozen=True)
class MoveSessions:
    """Move a draining (or stopping) worker's sessions to ``targets``."""

    worker: str
    url: str
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class UpdateStatus:
    status: BridgePoolStatus


Action = CreateWorker | DrainWorker | StopWorker | MoveSessions | EmitEvent | UpdateStatus


@dataclass(frozen=True)
class Pool:
    """The pool as the planner needs it."""

    name: str
    generation: int
    spec: BridgePoolSpec
    status: BridgePoolStatus  # as last written: conditions and autoscaler memory
    # The revision of ``spec``: what its executor makes workers from, hashed
    # (on a cluster the generated pod spec; on one machine the process).
    revision: str


def create_reasons(
    dead: int, old: Sequence[Outdated], grown: int, count: int
) -> list[CreateReason]:
    """Why each of ``count`` new workers is made: replacing the ``dead``
    workers first, then the ``old`` ones, then growing by ``grown``; any
    more replace workers that went missing (deleted or evicted by others)."""
    reasons: list[CreateReason] = ["replace"] * dead
    reasons += [CREATE_REASON[o.kind] for o in old]
    reasons += ["scale-up"] * grown
    reasons += ["replace"] * max(0, count - len(reasons))
    return reasons[:count]


def plan(pool: Pool, workers: Sequence[ObservedWorker], now: datetime) -> list[Action]:
    """Everything to do this pass to move the pool toward its spec."""
    spec = pool.spec
    revision = pool.revision
    grace = spec.rollout.termination_grace_period_seconds
    actions: list[Action] = []

    live = [w for w in workers if not w.stopping]
    draining = [w for w in live if w.draining]
    active = [w for w in live if not w.draining]

    # 1. Finished drains; the others' sessions move to workers that stay, as
    # do those of workers stopped from outside, within their grace period.
    targets = move_targets(live, revision) if spec.sessions.move_on_drain else ()
    for w in draining:
        done = drain_done(w, spec, now)
        if done is not None:
            actions.append(StopWorker(w.name, grace, *done))
        elif targets and w.url and w.sessions:
            actions.append(MoveSessions(w.name, w.url, targets))
    for w in workers:
        if w.stopping and targets and w.url and w.sessions:
            actions.append(MoveSessions(w.name, w.url, targets))

    # 2. Dead workers leave at once.
    dead = {w.name: why for w in active if (why := death_reason(w, spec, now)) is not None}
    for w in active:
        if w.name in dead:
            actions.append(DrainWorker(w.name, "unhealthy", dead[w.name]))
    serving = [w for w in active if w.name not in dead]

    # 3. Size.
    planned_before = pool.status.observed_generation is not None
    current = pool.status.desired_replicas if planned_before else spec.min_replicas
    decision = decide(
        spec, current, pool.status.autoscaling.recommendations, measure_load(live), now
    )
    desired = decision.desired

    # 4. Updated vs outdated.
    outdated = {
        w.name: out for w in serving if (out := outdated_reason(w, spec, revision)) is not None
    }
    updated = [w for w in serving if w.name not in outdated]
    old = [w for w in serving if w.name in outdated]

    # 5. Surplus of updated workers.
    if len(updated) > desired:
        surplus = drain_order(updated, revision)[: len(updated) - desired]
        for w in surplus:
            actions.append(DrainWorker(w.name, "scale-down", f"pool scaled to {desired}"))
        kept_names = {w.name for w in updated} - {w.name for w in surplus}
        updated = [w for w in updated if w.name in kept_names]

    # 6. Missing updated workers, within the surge budget, unless the API
    # server refused this template and its next try is not due.
    rejection = pool.status.template_rejection
    if rejection is not None and rejection.revision != revision:
        rejection = None  # a new template: a new chance
    retry = None if rejection is None else retry_time(rejection)
    held_back = retry is not None and now < retry
    room = desired + spec.rollout.max_surge - (len(updated) + len(old))
    to_create = 0 if held_back else max(0, min(desired - len(updated), room))
    grown = max(0, desired - current) if planned_before else desired
    reasons = create_reasons(len(dead), [outdated[w.name] for w in old], grown, to_create)
    actions.extend(CreateWorker(revision, reason) for reason in reasons)

    # 7. Outdated workers go while enough ready workers remain.
    min_ready = max(0, desired - spec.rollout.max_unavailable)
    ready_now = sum(1 for w in updated + old if w.ready)
    for w in drain_order(old, revision):
        if w.ready:
            if ready_now - 1 < min_ready:
                continue
            ready_now -= 1
        out = outdated[w.name]
        actions.append(DrainWorker(w.name, DRAIN_REASON[out.kind], out.message))

    status = build_status(
        name=pool.name,
        generation=pool.generation,
        spec=spec,
        prev=pool.status,
        live=live,
        revision=revision,
        decision=decision,
        now=now,
        dead=dead,
        creating=to_create,
        rejection=rejection,
    )
    actions.extend(transition_events(pool.status, status, current))
    actions.append(UpdateStatus(status))
    return actions


def plan_invalid(
    name: str,
    generation: int,
    prev: BridgePoolStatus,
    last_valid: tuple[BridgePoolSpec, str] | None,
    workers: Sequence[ObservedWorker],
    message: str,
    now: datetime,
) -> list[Action]:
    """The pool's spec at ``generation`` is invalid (``message`` says why):
    keep the pool healing on ``last_valid``, the last spec that was not (and
    its revision), and say the spec is invalid. With no valid spec ever seen,
    touch no workers."""
    if last_valid is None:
        return unplannable(prev, name, generation, "InvalidSpec", message, now)
    spec, revision = last_valid
    *actions, update = plan(Pool(name, generation, spec, prev, revision), workers, now)
    assert isinstance(update, UpdateStatus)
    status, events = problem_status(
        prev,
        name=name,
        generation=generation,
        reason="InvalidSpec",
        message=message,
        now=now,
        base=update.status,
    )
    # The planned status's condition events give way to the overlay's; a
    # change of size is still told.
    kept = [a for a in actions if not (isinstance(a, EmitEvent) and a.reason != "Scaled")]
    return [*kept, *events, UpdateStatus(status)]


def unplannable(
    prev: BridgePoolStatus,
    name: str,
    generation: int,
    reason: Literal["InvalidSpec", "ReconcileError"],
    message: str,
    now: datetime,
) -> list[Action]:
    """A pass that cannot plan (a spec the models reject, or a pass that
    failed): say so on the pool, touch no workers."""
    status, events = problem_status(
        prev, name=name, generation=generation, reason=reason, message=message, now=now
    )
    return [*events, UpdateStatus(status)]

"""The pool's status: counts, conditions, phase and a line per worker, built
from what one pass observed and decided; and the events its changes give.

Pure, like the planner that calls it. The conditions say:

- ``Ready``: ready workers >= desired. Its reason also remembers whether the
  pool was ever ready (``NotYetReady`` until then), which is what keeps an
  established pool ``Running`` while it grows or replaces a worker.
- ``Progressing``: what the pool is doing to reach its spec, or ``Complete``,
  or ``Stalled`` when it cannot get there without a change to the template.
- ``Degraded``: a problem a user should look at.
- ``ScalingLimited``: the autoscaler wanted a size out of bounds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bridgepool.backoff import backoff_seconds
from bridgepool.labels import pool_selector
from bridgepool.spec import (
    MAX_WORKER_SUMMARIES,
    AutoscalingStatus,
    BridgePoolSpec,
    BridgePoolStatus,
    Condition,
    ConditionType,
    PoolPhase,
    TemplateRejection,
    WorkerSummary,
    WorkerSummaryState,
)

from .drain import drain_deadline, draining_message, not_moved, unmovable
from .health import is_starting, plural, unready_detail
from .scaling import ScalingDecision, measure_load
from .workers import ObservedWorker, StartProblem, format_time, parse_time

ReadyReason = Literal["WorkersReady", "WorkersNotReady", "NotYetReady"]
ProgressingReason = Literal[
    "RollingOut", "ScalingUp", "ScalingDown", "Draining", "Complete", "Stalled"
]
LimitedReason = Literal["AtMinReplicas", "AtMaxReplicas", "WithinBounds"]
DegradedReason = (
    Literal[
        "Healthy",
        "InvalidSpec",
        "InvalidTemplate",
        "ReconcileError",
        "WorkerUnhealthy",
        "WorkersNotReady",
    ]
    | StartProblem
)
# Degraded reasons whose message names the problem itself (a field, an
# error): a new message is a new problem and gets its own event. For the
# others the message only lists workers, and a new event waits for a new reason.
PROBLEM_IN_MESSAGE: frozenset[DegradedReason] = frozenset(
    {"InvalidSpec", "InvalidTemplate", "ReconcileError"}
)
EventType = Literal["Normal", "Warning"]
# Unready workers named one by one in the Degraded message; the rest are counted.
MAX_NAMED_UNREADY = 3
# Refused worker creates are retried after 10 s, 20 s, 40 s, ... at most 5 min.
REJECTION_FIRST_RETRY_SECONDS = 10.0
REJECTION_MAX_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class EmitEvent:
    type: EventType
    reason: str
    message: str


def condition(
    prev: BridgePoolStatus,
    type_: ConditionType,
    ok: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
) -> Condition:
    """A condition; its transition time is kept while its status is unchanged."""
    status: Literal["True", "False"] = "True" if ok else "False"
    old = find(prev, type_)
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


def find(status: BridgePoolStatus, type_: ConditionType) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_.value), None)


def was_ever_ready(prev: BridgePoolStatus) -> bool:
    """Whether the pool has been Ready (all desired workers ready) at some time."""
    ready = find(prev, ConditionType.READY)
    return ready is not None and (ready.status == "True" or ready.reason == "WorkersNotReady")


def retry_time(rejection: TemplateRejection) -> datetime | None:
    """When creating a worker of a refused template is tried again."""
    last = parse_time(rejection.last_attempt_time)
    if last is None:
        return None
    delay = backoff_seconds(
        rejection.attempts, base=REJECTION_FIRST_RETRY_SECONDS, cap=REJECTION_MAX_RETRY_SECONDS
    )
    return last + timedelta(seconds=delay)


def _stalled_by_rejection(rejection: TemplateRejection) -> str:
    retry = retry_time(rejection)
    when = f"; next try at {format_time(retry)}" if retry is not None else ""
    return f"the workers of revision {rejection.revision} are refused{when}"


def _worker_state(w: ObservedWorker, dead: bool, starting: bool) -> WorkerSummaryState:
    if w.stopping:
        return "terminating"
    if w.draining:
        return "draining"
    if dead:
        return "failed"
    if not w.ready:
        return "starting" if starting else "degraded"
    if w.stats is None:
        return "ready"
    reported: dict[str, WorkerSummaryState] = {
        "initializing": "starting",
        "ready": "ready",
        "busy": "busy",
        "degraded": "degraded",
        "terminating": "terminating",
        "terminated": "terminating",
    }
    return reported.get(w.stats.state.value, "ready")


def build_status(
    *,
    name: str,
    generation: int,
    spec: BridgePoolSpec,
    prev: BridgePoolStatus,
    live: Sequence[ObservedWorker],
    revision: str,
    decision: ScalingDecision,
    now: datetime,
    dead: dict[str, str],
    creating: int,
    rejection: TemplateRejection | None,
) -> BridgePoolStatus:
    """The status of a pass that observed ``live`` and decided ``decision``;
    ``creating`` workers are made this pass, ``dead`` workers leave it, and
    ``rejection`` is the executor's refusal of the current template."""
    active = [w for w in live if not w.draining and w.name not in dead]
    ready = [w for w in active if w.ready]
    updated = [w for w in active if w.revision == revision]
    draining = [w for w in live if w.draining]
    desired = decision.desired
    load = measure_load(live)
    utilization = None if load.utilization is None else round(load.utilization * 100.0, 1)
    revisions = Counter(w.revision for w in ready)
    current_revision = revisions.most_common(1)[0][0] if revisions else revision
    starting = {w.name for w in live if is_starting(w, spec, now)}

    # Degraded: problems a new worker would not fix, workers failing, or unready ones.
    cannot_start = [w for w in active if w.config_problem]
    unready = [w for w in active if not w.ready and w.phase == "running" and w.name not in starting]
    degraded: tuple[bool, DegradedReason, str]
    if rejection is not None:
        degraded = (True, "InvalidTemplate", rejection.message)
    elif cannot_start:
        w = cannot_start[0]
        problem = w.start_problem or "ConfigProblem"
        detail = w.waiting_message or w.waiting_reason or problem
        degraded = (True, problem, f"{w.name}: {detail}")
    elif dead:
        dead_name, why = sorted(dead.items())[0]
        degraded = (True, "WorkerUnhealthy", f"{dead_name}: {why}; replacing")
    elif unready:
        named = sorted(unready, key=lambda w: w.name)
        details = [unready_detail(w, now) for w in named[:MAX_NAMED_UNREADY]]
        if len(named) > MAX_NAMED_UNREADY:
            details.append(f"and {plural(len(named) - MAX_NAMED_UNREADY, 'more worker')}")
        degraded = (True, "WorkersNotReady", "; ".join(details))
    else:
        degraded = (False, "Healthy", "all workers healthy")

    # Progressing: what the pool is doing to reach its spec.
    coming = [w for w in active if w.name in starting and not w.config_problem]
    stuck = [w for w in updated if w.config_problem]
    progressing: tuple[bool, ProgressingReason, str]
    if rejection is not None:
        progressing = (False, "Stalled", _stalled_by_rejection(rejection))
    elif stuck:
        progressing = (
            False,
            "Stalled",
            f"{plural(len(stuck), 'worker')} of revision {revision} cannot start "
            f"({stuck[0].waiting_reason})",
        )
    elif len(updated) != len(active):
        progressing = (
            True,
            "RollingOut",
            f"{len(updated)} of {plural(desired, 'worker')} at revision {revision}"
            + (f"; {draining_message(draining, spec)}" if draining else ""),
        )
    elif creating or len(active) < desired or coming:
        progressing = (
            True,
            "ScalingUp",
            f"{len(ready)} of {plural(desired, 'worker')} ready, {creating + len(coming)} starting",
        )
    elif draining:
        progressing = (True, "Draining", draining_message(draining, spec))
    elif len(active) > desired:  # this pass picks the workers to drain
        progressing = (True, "ScalingDown", f"{len(active)} -> {plural(desired, 'worker')}")
    else:
        progressing = (False, "Complete", f"{plural(desired, 'worker')} at revision {revision}")

    ready_ok = len(ready) >= desired
    established = ready_ok or was_ever_ready(prev)
    ready_reason: ReadyReason = (
        "WorkersReady" if ready_ok else "WorkersNotReady" if established else "NotYetReady"
    )
    ready_cond = (ready_ok, ready_reason, f"{len(ready)} of {plural(desired, 'worker')} ready")
    limited: tuple[bool, LimitedReason, str]
    if decision.limited is not None:
        bound = spec.max_replicas if decision.limited == "AtMaxReplicas" else spec.min_replicas
        limited = (
            True,
            decision.limited,
            f"recommended {plural(decision.recommendation or 0, 'worker')}, bounded to {bound}",
        )
    else:
        limited = (False, "WithinBounds", "scaling within minReplicas..maxReplicas")

    conditions = [
        condition(prev, t, ok, reason, msg, generation, now)
        for t, (ok, reason, msg) in (
            (ConditionType.READY, ready_cond),
            (ConditionType.PROGRESSING, progressing),
            (ConditionType.DEGRADED, degraded),
            (ConditionType.SCALING_LIMITED, limited),
        )
    ]
    # An established pool that grows, shrinks or replaces a worker keeps
    # serving: it stays Running. Progressing is the phase of a new template
    # rolling out.
    phase: PoolPhase
    if degraded[0]:
        phase = "Degraded"
    elif not established:
        phase = "Pending"
    elif progressing[1] == "RollingOut" or any(w.revision != revision for w in draining):
        # Old workers still draining their sessions: the rollout is not over.
        phase = "Progressing"
    else:
        phase = "Running"

    summaries = [
        WorkerSummary(
            name=w.name,
            state=_worker_state(w, w.name in dead, w.name in starting),
            ready=w.ready,
            draining=w.draining,
            sessions=w.sessions,
            in_flight=w.in_flight,
            revision=w.revision,
            drain_reason=w.drain_reason if w.draining else None,
            drain_deadline=format_time(drain_deadline(w, spec)) if w.draining else None,
            not_moved=not_moved(held) if (held := unmovable(w)) else None,
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
        observed_generation=generation,
        selector=pool_selector(name),
        phase=phase,
        workers=summaries,
        conditions=conditions,
        autoscaling=AutoscalingStatus(recommendations=list(decision.recommendations)),
        template_rejection=rejection,
    )


def condition_events(prev: BridgePoolStatus, new: BridgePoolStatus) -> list[EmitEvent]:
    """An event for each Degraded or ScalingLimited condition that became true
    or changed its reason (or, for a problem its message names, its message)."""
    events: list[EmitEvent] = []
    before = {c.type: c for c in prev.conditions}
    for cond in new.conditions:
        if cond.status != "True":
            continue
        old = before.get(cond.type)
        changed = old is None or (old.status, old.reason) != (cond.status, cond.reason)
        if cond.type == ConditionType.DEGRADED.value:
            new_problem = (
                cond.reason in PROBLEM_IN_MESSAGE
                and old is not None
                and old.message != cond.message
            )
            if changed or new_problem:
                events.append(EmitEvent("Warning", cond.reason, cond.message))
        elif cond.type == ConditionType.SCALING_LIMITED.value and changed:
            events.append(EmitEvent("Normal", cond.reason, cond.message))
    return events


def transition_events(
    prev: BridgePoolStatus, new: BridgePoolStatus, current: int
) -> list[EmitEvent]:
    """Events for a change of size and of the Degraded/ScalingLimited conditions."""
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
    return events + condition_events(prev, new)


def _with_conditions(status: BridgePoolStatus, *replacing: Condition) -> list[Condition]:
    """``status``'s conditions with those of the same types replaced (or added)."""
    new = {c.type: c for c in replacing}
    kept = [new.pop(c.type, c) for c in status.conditions]
    return [*kept, *new.values()]


def problem_status(
    prev: BridgePoolStatus,
    *,
    name: str,
    generation: int,
    reason: Literal["InvalidSpec", "ReconcileError"],
    message: str,
    now: datetime,
    base: BridgePoolStatus | None = None,
) -> tuple[BridgePoolStatus, list[EmitEvent]]:
    """The status of a pass with a problem: ``base`` (the status planned from
    the last valid spec; by default the last status written), Degraded with
    ``reason``; and one event per problem."""
    base = prev if base is None else base
    degraded = condition(prev, ConditionType.DEGRADED, True, reason, message, generation, now)
    phase: PoolPhase = "Invalid" if reason == "InvalidSpec" else "Degraded"
    status = base.model_copy(
        update={
            "conditions": _with_conditions(base, degraded),
            "phase": phase,
            "selector": pool_selector(name),
        }
    )
    return status, condition_events(prev, status)


def after_creates(
    prev: BridgePoolStatus,
    planned: BridgePoolStatus,
    *,
    revision: str,
    refused: str | None,
    generation: int,
    now: datetime,
) -> tuple[BridgePoolStatus, list[EmitEvent]]:
    """The planned status once the pass has tried to create workers of
    ``revision``: the executor either made one (any refusal is history) or refused the
    template with the message ``refused``. A refusal makes the pool Degraded
    (InvalidTemplate, one event per message) and spaces out further attempts;
    the rest of the planned status (the workers observed) stands."""
    if refused is None:
        return planned.model_copy(update={"template_rejection": None}), []
    old = prev.template_rejection
    attempts = old.attempts + 1 if old is not None and old.revision == revision else 1
    rejection = TemplateRejection(
        revision=revision, message=refused, attempts=attempts, last_attempt_time=format_time(now)
    )
    degraded = condition(
        prev, ConditionType.DEGRADED, True, "InvalidTemplate", refused, generation, now
    )
    stalled = condition(
        prev,
        ConditionType.PROGRESSING,
        False,
        "Stalled",
        _stalled_by_rejection(rejection),
        generation,
        now,
    )
    status = planned.model_copy(
        update={
            "conditions": _with_conditions(planned, stalled, degraded),
            "phase": "Degraded",
            "template_rejection": rejection,
        }
    )
    return status, condition_events(prev, status)


def created_event(worker: str, revision: str, reason: str) -> EmitEvent:
    """The event of a worker made (its executor names it)."""
    return EmitEvent("Normal", "WorkerCreated", f"{worker} (revision {revision}, {reason})")


def drain_event(worker: str, reason: str, message: str) -> EmitEvent:
    """The event of a worker marked draining: a warning when it is unhealthy."""
    if reason == "unhealthy":
        return EmitEvent("Warning", "WorkerUnhealthy", f"{worker} draining ({reason}): {message}")
    return EmitEvent("Normal", "WorkerDraining", f"{worker} draining ({reason}): {message}")


def stop_event(worker: str, message: str) -> EmitEvent:
    """The event of a worker stopped (on a cluster, its pod deleted)."""
    return EmitEvent("Normal", "WorkerDeleted", f"{worker}: {message}")


def move_events(
    worker: str, moved: Mapping[str, str], cannot_move: Mapping[str, str]
) -> list[EmitEvent]:
    """The events of one round of moves off ``worker``: the sessions moved
    (session -> new holder), and those that cannot move (session -> why),
    which their worker remembers: each is told once."""
    events = []
    if moved:
        holders = ", ".join(sorted(set(moved.values())))
        events.append(
            EmitEvent(
                "Normal",
                "SessionsMoved",
                f"{worker}: {plural(len(moved), 'session')} moved to {holders}",
            )
        )
    if cannot_move:
        reasons = ", ".join(sorted(set(cannot_move.values())))
        events.append(
            EmitEvent(
                "Warning",
                "SessionsNotMoved",
                f"{worker}: {plural(len(cannot_move), 'session')} cannot move ({reasons}); "
                "they stay until they end or the drain gives up",
            )
        )
    return events

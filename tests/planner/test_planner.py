"""The reconcile planner, by tables of observed states and the actions they give."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridgepool.protocol import RecycleStatus, WorkerState, WorkerStats
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus, Condition
from bridgepool_planner.drain import drain_order
from bridgepool_planner.planner import (
    Action,
    CreateWorker,
    DrainWorker,
    MoveSessions,
    Pool,
    StopWorker,
    UpdateStatus,
    plan,
    plan_invalid,
    unplannable,
)
from bridgepool_planner.scaling import measure_load
from bridgepool_planner.status import EmitEvent, after_creates
from bridgepool_planner.workers import ObservedWorker, StartProblem, WorkerPhase

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
IMAGE = "bridgepool-worker:1"


def make_spec(image: str = IMAGE, **fields: Any) -> BridgePoolSpec:
    template = {"spec": {"containers": [{"name": "worker", "image": image}]}}
    return BridgePoolSpec.model_validate({"template": template, **fields})


def revision_of(spec: BridgePoolSpec) -> str:
    """The revision an executor would name for ``spec``: here, its template hashed."""
    template = json.dumps(spec.template.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(template.encode()).hexdigest()[:10]


SPEC = make_spec(minReplicas=3, maxReplicas=10)
REV = revision_of(SPEC)
OLD = revision_of(make_spec(image="bridgepool-worker:0"))


def stats(
    sessions: int = 0, in_flight: int = 0, capacity: int = 1, recycle: bool = False
) -> WorkerStats:
    return WorkerStats(
        worker="w",
        state=WorkerState.READY,
        accepting_sessions=True,
        in_flight=in_flight,
        capacity=capacity,
        requests_total=0,
        errors_total=0,
        errors_by_category={},
        uptime_seconds=1.0,
        memory_rss_bytes=1,
        sessions=sessions,
        max_sessions=1000,
        session_ttl_seconds=300.0,
        recycle=RecycleStatus(due=recycle, reason="max_requests" if recycle else None),
    )


def worker(
    name: str,
    rev: str = REV,
    *,
    ready: bool = True,
    age: float = 600.0,
    sessions: int | None = 0,
    in_flight: int = 0,
    draining_for: float | None = None,
    phase: WorkerPhase = "running",
    restarts: int = 0,
    crash_looping: bool = False,
    start_problem: StartProblem | None = None,
    not_ready_for: float | None = None,
    started_for: float | None = None,
    recycle: bool = False,
    stopping: bool = False,
    capacity: int = 1,
) -> ObservedWorker:
    created = NOW - timedelta(seconds=age)
    return ObservedWorker(
        name=name,
        revision=rev,
        created_at=created,
        phase=phase,
        ready=ready,
        ready_changed_at=(
            NOW - timedelta(seconds=not_ready_for) if not_ready_for is not None else created
        ),
        # The process started when the worker was made, unless said otherwise.
        started_at=(
            None
            if phase != "running"
            else NOW - timedelta(seconds=started_for)
            if started_for is not None
            else created
        ),
        stopping=stopping,
        draining_since=(None if draining_for is None else NOW - timedelta(seconds=draining_for)),
        restart_count=restarts,
        crash_looping=crash_looping,
        start_problem=start_problem,
        waiting_reason="crash loop" if crash_looping else start_problem,
        waiting_message="boom" if start_problem else None,
        url=f"http://{name}:8080" if phase == "running" else None,
        stats=(
            stats(sessions, in_flight, capacity, recycle)
            if sessions is not None and ready
            else None
        ),
    )


def written_status(desired: int) -> BridgePoolStatus:
    """A status as a previous pass left it."""
    return BridgePoolStatus(desired_replicas=desired, observed_generation=1)


def established(desired: int) -> BridgePoolStatus:
    """A status as a previous pass left it, of a pool that has been Ready."""
    ready = Condition(
        type="Ready",
        status="True",
        reason="WorkersReady",
        last_transition_time="2024-05-01T11:00:00Z",
    )
    return written_status(desired).model_copy(update={"conditions": [ready], "phase": "Running"})


def run(
    workers: list[ObservedWorker],
    spec: BridgePoolSpec = SPEC,
    status: BridgePoolStatus | None = None,
    now: datetime = NOW,
) -> list[Action]:
    pool = Pool("pool", 1, spec, status or written_status(spec.min_replicas), revision_of(spec))
    return plan(pool, workers, now)


def pod_actions(actions: list[Action]) -> list[tuple[str, ...]]:
    """The actions that change workers, as short tuples for tables."""
    out: list[tuple[str, ...]] = []
    for a in actions:
        if isinstance(a, CreateWorker):
            out.append(("create", a.revision))
        elif isinstance(a, DrainWorker):
            out.append(("drain", a.worker, a.reason))
        elif isinstance(a, StopWorker):
            out.append(("delete", a.worker))
    return out


def status_of(actions: list[Action]) -> BridgePoolStatus:
    (update,) = [a for a in actions if isinstance(a, UpdateStatus)]
    return update.status


def condition(actions: list[Action], type_: str) -> tuple[str, str]:
    (c,) = [c for c in status_of(actions).conditions if c.type == type_]
    return c.status, c.reason


ROLLOUT_1_0 = make_spec(minReplicas=3, maxReplicas=10)  # maxSurge 1, maxUnavailable 0
ROLLOUT_0_1 = make_spec(minReplicas=3, maxReplicas=10, rollout={"maxSurge": 0, "maxUnavailable": 1})

CASES: list[tuple[str, BridgePoolSpec, list[ObservedWorker], list[tuple[str, ...]]]] = [
    ("empty pool gets min workers", SPEC, [], [("create", REV)] * 3),
    ("steady pool does nothing", SPEC, [worker("a"), worker("b"), worker("c")], []),
    (
        "starting workers are not duplicated",
        SPEC,
        [worker("a", ready=False, age=1), worker("b", ready=False, age=1), worker("c")],
        [],
    ),
    (
        "pods being deleted are ignored and replaced",
        SPEC,
        [worker("a"), worker("b"), worker("c", stopping=True)],
        [("create", REV)],
    ),
    (
        "fixed replicas: scale down drains the emptiest",
        make_spec(minReplicas=1, replicas=1),
        [worker("a", sessions=5), worker("b", sessions=0), worker("c", sessions=2)],
        [("drain", "b", "scale-down"), ("drain", "c", "scale-down")],
    ),
    (
        "fixed replicas: scale up creates all missing at once",
        make_spec(minReplicas=1, replicas=4),
        [worker("a")],
        [("create", REV)] * 3,
    ),
    (
        "rollout surges one new worker first, drains nothing",
        ROLLOUT_1_0,
        [worker("a", OLD), worker("b", OLD), worker("c", OLD)],
        [("create", REV)],
    ),
    (
        "rollout waits while the new worker is not ready",
        ROLLOUT_1_0,
        [worker("a", OLD), worker("b", OLD), worker("c", OLD), worker("n", ready=False, age=1)],
        [],
    ),
    (
        "rollout drains one old worker (fewest sessions) once the new one is ready",
        ROLLOUT_1_0,
        [
            worker("a", OLD, sessions=3),
            worker("b", OLD, sessions=1),
            worker("c", OLD, sessions=2),
            worker("n"),
        ],
        [("drain", "b", "rollout")],
    ),
    (
        "rollout surges again once an old worker left",
        ROLLOUT_1_0,
        [
            worker("a", OLD),
            worker("c", OLD),
            worker("n"),
            worker("b", OLD, draining_for=5, sessions=1),
        ],
        [("create", REV)],
    ),
    (
        "maxUnavailable 1, maxSurge 0: drain first, then create",
        ROLLOUT_0_1,
        [worker("a", OLD, sessions=2), worker("b", OLD, sessions=1), worker("c", OLD, sessions=3)],
        [("drain", "b", "rollout")],
    ),
    (
        "maxUnavailable 1, maxSurge 0: create into the freed slot",
        ROLLOUT_0_1,
        [worker("a", OLD), worker("c", OLD), worker("b", OLD, draining_for=1, sessions=1)],
        [("create", REV)],
    ),
    (
        "drained worker with no sessions is deleted",
        SPEC,
        [worker("a"), worker("b"), worker("c"), worker("d", draining_for=5, sessions=0)],
        [("delete", "d")],
    ),
    (
        "draining worker with sessions waits",
        SPEC,
        [worker("a"), worker("b"), worker("c"), worker("d", draining_for=5, sessions=2)],
        [],
    ),
    (
        "draining worker with in-flight calls waits",
        SPEC,
        [worker("a"), worker("b"), worker("c"), worker("d", draining_for=5, in_flight=1)],
        [],
    ),
    (
        "drain timeout deletes a worker that still has sessions",
        SPEC,
        [worker("a"), worker("b"), worker("c"), worker("d", draining_for=301, sessions=2)],
        [("delete", "d")],
    ),
    (
        "a draining worker that stopped serving is deleted",
        SPEC,
        [worker("a"), worker("b"), worker("c"), worker("d", draining_for=5, ready=False)],
        [("delete", "d")],
    ),
    (
        "crash loop: drained at once, replacement created in the same pass",
        SPEC,
        [
            worker("a"),
            worker("b"),
            worker("c", ready=False, crash_looping=True, restarts=2),
        ],
        [("drain", "c", "unhealthy"), ("create", REV)],
    ),
    (
        "failed pod is replaced",
        SPEC,
        [worker("a"), worker("b"), worker("c", ready=False, phase="exited")],
        [("drain", "c", "unhealthy"), ("create", REV)],
    ),
    (
        "not ready for 3 health intervals: replaced",
        SPEC,
        [worker("a"), worker("b"), worker("c", ready=False, not_ready_for=91)],
        [("drain", "c", "unhealthy"), ("create", REV)],
    ),
    (
        "not ready for less: only degraded, kept",
        SPEC,
        [worker("a"), worker("b"), worker("c", ready=False, not_ready_for=31)],
        [],
    ),
    (
        "image that never pulls: not replaced (a new pod would not pull either)",
        SPEC,
        [
            worker("a", ready=False, phase="pending", start_problem="ImagePullBackOff", age=900),
            worker("b", ready=False, phase="pending", start_problem="ImagePullBackOff", age=900),
            worker("c", ready=False, phase="pending", start_problem="ImagePullBackOff", age=900),
        ],
        [],
    ),
    (
        "recycling due: new worker first",
        SPEC,
        [worker("a"), worker("b"), worker("c", recycle=True)],
        [("create", REV)],
    ),
    (
        "recycling due: drained once the replacement is ready",
        SPEC,
        [worker("a"), worker("b"), worker("c", recycle=True), worker("n", age=5)],
        [("drain", "c", "recycle")],
    ),
    (
        "too many restarts while serving: graceful replacement",
        SPEC,
        [worker("a"), worker("b"), worker("c", restarts=3), worker("n", age=5)],
        [("drain", "c", "unhealthy")],
    ),
]


@pytest.mark.parametrize(
    ("spec", "workers", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plan_table(
    spec: BridgePoolSpec, workers: list[ObservedWorker], expected: list[tuple[str, ...]]
) -> None:
    actions = run(workers, spec=spec, status=written_status(spec.fixed_replicas))
    assert pod_actions(actions) == expected


def test_victim_order() -> None:
    """Not ready first, then fewest sessions, then old revision, then youngest."""
    workers = [
        worker("busy-new-old", sessions=9, age=900),
        worker("idle-new-young", sessions=0, age=10),
        worker("idle-new-old", sessions=0, age=900),
        worker("idle-oldrev", OLD, sessions=0, age=900),
        worker("few", sessions=1, age=10),
        worker("unready", ready=False, sessions=None, age=900),
    ]
    order = [w.name for w in drain_order(workers, REV)]
    assert order == [
        "unready",
        "idle-oldrev",
        "idle-new-young",
        "idle-new-old",
        "few",
        "busy-new-old",
    ]


def test_same_observed_state_same_actions() -> None:
    """A restarted operator (fresh planner, same pods and status) decides the same."""
    state = [worker("a", OLD), worker("b", OLD), worker("c", OLD), worker("n", ready=False, age=1)]
    first = run(state, ROLLOUT_1_0)
    second = run(list(reversed(state)), ROLLOUT_1_0)
    assert pod_actions(first) == pod_actions(second) == []
    assert status_of(first) == status_of(second)


class Cluster:
    """A tiny stand-in for the API server + kubelet, to drive the planner pass by pass.

    New pods become ready one pass after creation; a drained worker's sessions end
    after two passes.
    """

    def __init__(self, workers: list[ObservedWorker]) -> None:
        self.workers = {w.name: w for w in workers}
        self.count = 0
        self.now = NOW
        self.status = written_status(3)
        self.max_pods = len(workers)
        self.max_active = len(workers)
        self.min_ready_active = len(workers)

    def step(self, spec: BridgePoolSpec) -> list[Action]:
        self.now += timedelta(seconds=5)
        for name, w in list(self.workers.items()):
            if not w.ready and w.phase == "running" and w.waiting_reason is None:
                self.workers[name] = replace(w, ready=True, stats=stats())
            elif w.draining and w.stats is not None and w.stats.sessions > 0:
                left = w.stats.sessions - 1
                self.workers[name] = replace(w, stats=stats(sessions=left))
        pool = Pool("pool", 2, spec, self.status, revision_of(spec))
        actions = plan(pool, list(self.workers.values()), self.now)
        for a in actions:
            if isinstance(a, CreateWorker):
                self.count += 1
                name = f"new-{self.count}"
                self.workers[name] = ObservedWorker(
                    name=name, revision=a.revision, created_at=self.now, ready=False
                )
            elif isinstance(a, DrainWorker):
                self.workers[a.worker] = replace(self.workers[a.worker], draining_since=self.now)
            elif isinstance(a, StopWorker):
                del self.workers[a.worker]
            elif isinstance(a, UpdateStatus):
                self.status = a.status
        active = [w for w in self.workers.values() if not w.draining]
        self.max_pods = max(self.max_pods, len(self.workers))
        self.max_active = max(self.max_active, len(active))
        self.min_ready_active = min(self.min_ready_active, sum(w.ready for w in active))
        return actions


@pytest.mark.parametrize("restart_at", [None, 2, 5])
def test_rollout_converges_with_surge_and_availability(restart_at: int | None) -> None:
    cluster = Cluster([worker(n, OLD, sessions=2) for n in "abc"])
    for i in range(40):
        if restart_at == i:
            # An operator restart: nothing survives but pods and status.
            cluster.status = BridgePoolStatus.model_validate(
                cluster.status.model_dump(by_alias=True, exclude_none=True)
            )
        cluster.step(ROLLOUT_1_0)
        if status_of_conditions_complete(cluster.status):
            break
    else:
        pytest.fail("rollout did not complete")
    assert sorted(w.revision for w in cluster.workers.values()) == [REV] * 3
    assert cluster.count == 3  # exactly one new pod per old one
    assert cluster.max_active <= 3 + 1  # maxSurge
    assert cluster.min_ready_active >= 3  # maxUnavailable 0
    assert cluster.status.updated_replicas == 3
    assert cluster.status.current_revision == REV


def status_of_conditions_complete(status: BridgePoolStatus) -> bool:
    return any(c.type == "Progressing" and c.reason == "Complete" for c in status.conditions)


def test_status_of_the_pass_that_starts_a_scale_down_says_so() -> None:
    actions = run([worker(n) for n in "abcd"], make_spec(minReplicas=1, replicas=3))
    assert pod_actions(actions) == [("drain", "a", "scale-down")]
    assert condition(actions, "Progressing") == ("True", "ScalingDown")
    (progressing,) = [c for c in status_of(actions).conditions if c.type == "Progressing"]
    assert progressing.message == "4 -> 3 workers"


def test_status_counts_and_conditions() -> None:
    workers = [
        worker("a", in_flight=1, capacity=2),
        worker("b", in_flight=0, capacity=2),
        worker("c", ready=False, age=2, phase="pending"),
        worker("d", draining_for=3, sessions=4),
    ]
    actions = run(workers, status=established(3))
    status = status_of(actions)
    assert (status.replicas, status.ready_replicas, status.desired_replicas) == (4, 2, 3)
    assert status.utilization == 25.0
    assert status.selector == "bridgepool.io/pool=pool"
    assert status.update_revision == REV
    assert condition(actions, "Ready") == ("False", "WorkersNotReady")
    # c replaces d: the pool grows back to 3 while d drains.
    assert condition(actions, "Progressing") == ("True", "ScalingUp")
    assert condition(actions, "Degraded") == ("False", "Healthy")
    assert condition(actions, "ScalingLimited") == ("False", "WithinBounds")
    assert [(w.name, w.state) for w in status.workers] == [
        ("a", "ready"),
        ("b", "ready"),
        ("c", "starting"),
        ("d", "draining"),
    ]


def test_ready_pool_is_running() -> None:
    actions = run([worker("a"), worker("b"), worker("c")])
    assert condition(actions, "Ready") == ("True", "WorkersReady")
    assert condition(actions, "Progressing") == ("False", "Complete")
    assert status_of(actions).phase == "Running"


def test_image_pull_failure_degrades_with_reason_and_one_event() -> None:
    workers = [
        worker(n, ready=False, phase="pending", start_problem="ImagePullBackOff") for n in "abc"
    ]
    actions = run(workers)
    assert condition(actions, "Degraded") == ("True", "ImagePullBackOff")
    events = [a for a in actions if isinstance(a, EmitEvent)]
    assert [(e.type, e.reason) for e in events] == [("Warning", "ImagePullBackOff")]
    # Next pass with the status it wrote: still degraded, no repeated event.
    again = run(workers, status=status_of(actions))
    assert not [a for a in again if isinstance(a, EmitEvent)]
    assert status_of(actions).phase == "Degraded"


def test_condition_transition_time_kept_while_unchanged() -> None:
    first = run([worker("a"), worker("b"), worker("c")])
    later = run(
        [worker("a"), worker("b"), worker("c")],
        status=status_of(first),
        now=NOW + timedelta(minutes=5),
    )
    assert [c.last_transition_time for c in status_of(first).conditions] == [
        c.last_transition_time for c in status_of(later).conditions
    ]


def test_autoscaled_pool_scales_up_emits_event_and_creates() -> None:
    spec = make_spec(
        minReplicas=2,
        maxReplicas=5,
        autoscaling={"enabled": True, "scaleUpStabilizationSeconds": 0},
    )
    busy = [worker("a", in_flight=1), worker("b", in_flight=1)]
    actions = run(busy, spec=spec, status=written_status(2))
    # 2 in flight / (1 capacity * 0.7) -> 3 workers
    assert pod_actions(actions) == [("create", revision_of(spec))]
    events = [(a.reason, a.message) for a in actions if isinstance(a, EmitEvent)]
    assert events == [("Scaled", "desired workers 2 -> 3 (utilization 100.0%)")]


def test_autoscaled_pool_at_max_is_scaling_limited() -> None:
    spec = make_spec(
        minReplicas=1,
        maxReplicas=2,
        autoscaling={"enabled": True, "scaleUpStabilizationSeconds": 0},
    )
    busy = [worker("a", in_flight=1), worker("b", in_flight=1)]
    actions = run(busy, spec=spec, status=written_status(2))
    assert pod_actions(actions) == []
    assert condition(actions, "ScalingLimited") == ("True", "AtMaxReplicas")


def test_invalid_spec_gives_condition_event_and_no_pod_actions() -> None:
    actions = unplannable(
        BridgePoolStatus(), "pool", 4, "InvalidSpec", "spec.minReplicas (5) ...", NOW
    )
    assert pod_actions(actions) == []
    events = [a for a in actions if isinstance(a, EmitEvent)]
    assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidSpec")]
    status = status_of(actions)
    assert status.phase == "Invalid"
    assert [(c.type, c.status, c.reason) for c in status.conditions] == [
        ("Degraded", "True", "InvalidSpec")
    ]
    # Same problem next pass: no second event.
    again = unplannable(status, "pool", 4, "InvalidSpec", "spec.minReplicas (5) ...", NOW)
    assert not [a for a in again if isinstance(a, EmitEvent)]


def degraded_stats() -> WorkerStats:
    return stats().model_copy(update={"state": WorkerState.DEGRADED})


@pytest.mark.parametrize(
    ("unready", "state", "degraded", "replaced"),
    [
        # Never ready since its start: starting, and the pool is not degraded,
        # until the startup timeout (300 s) has passed.
        (worker("c", ready=False, age=2), "starting", ("False", "Healthy"), False),
        (
            worker("c", ready=False, age=2, phase="pending"),
            "starting",
            ("False", "Healthy"),
            False,
        ),
        (worker("c", ready=False, age=299), "starting", ("False", "Healthy"), False),
        # A slow container start does not count: started 10 s ago.
        (
            worker("c", ready=False, age=900, started_for=10),
            "starting",
            ("False", "Healthy"),
            False,
        ),
        (worker("c", ready=False, age=301), "failed", ("True", "WorkerUnhealthy"), True),
        # Was ready, went unready: degraded at once, replaced after 3 intervals.
        (
            worker("c", ready=False, age=600, not_ready_for=2),
            "degraded",
            ("True", "WorkersNotReady"),
            False,
        ),
        (
            worker("c", ready=False, age=600, not_ready_for=91),
            "failed",
            ("True", "WorkerUnhealthy"),
            True,
        ),
        # Unready as long, but the worker answers the operator that it serves:
        # the kubelet's checks do not get through (a crushed node). Kept.
        (
            replace(worker("c", ready=False, age=600, not_ready_for=91), stats=stats()),
            "degraded",
            ("True", "WorkersNotReady"),
            False,
        ),
        (
            replace(worker("c", ready=False, age=400), stats=stats()),
            "degraded",
            ("True", "WorkersNotReady"),
            False,
        ),
        # ... unless it reports itself degraded.
        (
            replace(worker("c", ready=False, age=600, not_ready_for=91), stats=degraded_stats()),
            "failed",
            ("True", "WorkerUnhealthy"),
            True,
        ),
        # The worker says it is degraded: no waiting.
        (
            replace(worker("c", ready=False, age=2), stats=degraded_stats()),
            "degraded",
            ("True", "WorkersNotReady"),
            False,
        ),
    ],
)
def test_starting_workers_get_time_and_workers_gone_unready_do_not(
    unready: ObservedWorker, state: str, degraded: tuple[str, str], replaced: bool
) -> None:
    actions = run([worker("a"), worker("b"), unready])
    assert condition(actions, "Degraded") == degraded
    assert dict((w.name, w.state) for w in status_of(actions).workers)["c"] == state
    assert (("drain", "c", "unhealthy") in pod_actions(actions)) == replaced


@pytest.mark.parametrize(
    ("workers", "status", "reason"),
    [
        pytest.param([], BridgePoolStatus(), "scale-up", id="a new pool"),
        pytest.param([worker("a")], written_status(1), "scale-up", id="grows 1 -> 3"),
        pytest.param([worker("a")], written_status(3), "replace", id="two workers went missing"),
        pytest.param(
            [worker("a"), worker("b"), worker("c", OLD)], written_status(3), "rollout", id="rollout"
        ),
        pytest.param(
            [worker("a"), worker("b"), worker("c", phase="exited", ready=False)],
            written_status(3),
            "replace",
            id="a failed worker",
        ),
        pytest.param(
            [worker("a"), worker("b"), worker("c", recycle=True)],
            written_status(3),
            "recycle",
            id="recycling due",
        ),
        pytest.param(
            [worker("a"), worker("b"), worker("c", restarts=3)],
            written_status(3),
            "replace",
            id="too many restarts",
        ),
    ],
)
def test_created_workers_say_why(
    workers: list[ObservedWorker], status: BridgePoolStatus, reason: str
) -> None:
    created = [a for a in run(workers, status=status) if isinstance(a, CreateWorker)]
    assert created
    assert {a.reason for a in created} == {reason}


# -- what the status says while the pool changes -------------------------------

FIXED_3 = make_spec(minReplicas=1, maxReplicas=10, replicas=3)
FIXED_1 = make_spec(minReplicas=1, maxReplicas=10, replicas=1)


def starting(name: str) -> ObservedWorker:
    """A worker made a moment ago, not ready yet."""
    return worker(name, ready=False, age=2)


@pytest.mark.parametrize(
    ("spec", "prev", "workers", "progressing", "phase"),
    [
        pytest.param(
            FIXED_3,
            BridgePoolStatus(),
            [],
            ("True", "ScalingUp"),
            "Pending",
            id="a new pool creates its workers",
        ),
        pytest.param(
            FIXED_3,
            written_status(3),
            [starting(n) for n in "abc"],
            ("True", "ScalingUp"),
            "Pending",
            id="a new pool's workers start: pending until it was first ready",
        ),
        pytest.param(
            FIXED_3,
            established(2),
            [worker("a"), worker("b")],
            ("True", "ScalingUp"),
            "Running",
            id="an established pool grows: creating",
        ),
        pytest.param(
            FIXED_3,
            established(3),
            [worker("a"), worker("b"), starting("c")],
            ("True", "ScalingUp"),
            "Running",
            id="an established pool grows: the new worker starts",
        ),
        pytest.param(
            FIXED_3,
            established(3),
            [worker("a"), worker("b")],
            ("True", "ScalingUp"),
            "Running",
            id="an established pool replaces a worker that went missing",
        ),
        pytest.param(
            FIXED_3,
            established(3),
            [worker("a"), worker("b"), worker("c", recycle=True), starting("n")],
            ("True", "ScalingUp"),
            "Running",
            id="an established pool replaces a worker due for recycling",
        ),
        pytest.param(
            FIXED_1,
            established(1),
            [starting("n")],
            ("True", "ScalingUp"),
            "Running",
            id="an established pool's only worker is replaced",
        ),
        pytest.param(
            FIXED_3,
            established(3),
            [worker("a"), worker("b"), worker("c")],
            ("False", "Complete"),
            "Running",
            id="steady",
        ),
        pytest.param(
            FIXED_3,
            established(3),
            [worker("a"), worker("b"), worker("c"), worker("d")],
            ("True", "ScalingDown"),
            "Running",
            id="an established pool shrinks",
        ),
        pytest.param(
            FIXED_3,
            established(3),
            [worker("a", OLD), worker("b", OLD), worker("c", OLD)],
            ("True", "RollingOut"),
            "Progressing",
            id="a new template rolls out",
        ),
        pytest.param(
            FIXED_1,
            written_status(1),
            [worker("a", ready=False, phase="pending", start_problem="ImagePullBackOff")],
            ("False", "Stalled"),
            "Degraded",
            id="the only worker cannot pull its image: not Complete",
        ),
        pytest.param(
            FIXED_3,
            established(3),
            [
                worker("a", OLD),
                worker("b", OLD),
                worker("c", OLD),
                worker("n", ready=False, phase="pending", start_problem="ImagePullBackOff"),
            ],
            ("False", "Stalled"),
            "Degraded",
            id="a rollout whose new worker cannot pull its image",
        ),
    ],
)
def test_progressing_and_phase_say_what_the_pool_does(
    spec: BridgePoolSpec,
    prev: BridgePoolStatus,
    workers: list[ObservedWorker],
    progressing: tuple[str, str],
    phase: str,
) -> None:
    actions = run(workers, spec=spec, status=prev)
    assert condition(actions, "Progressing") == progressing
    assert status_of(actions).phase == phase


def test_scaling_up_step_by_step_reports_scaling_up_and_stays_running() -> None:
    """From 3 to 5 workers, pass by pass: never Pending, never Complete while
    a worker starts, and Complete at the end."""
    cluster = Cluster([worker(n) for n in "abc"])
    cluster.status = established(3)
    bigger = make_spec(minReplicas=1, maxReplicas=10, replicas=5)
    seen = []
    for _ in range(4):
        cluster.step(bigger)
        progressing = next(c for c in cluster.status.conditions if c.type == "Progressing")
        seen.append((cluster.status.phase, progressing.reason, cluster.status.ready_replicas))
    assert seen[0] == ("Running", "ScalingUp", 3)
    assert seen[-1] == ("Running", "Complete", 5)
    assert {phase for phase, _, _ in seen} == {"Running"}
    assert all(reason == "ScalingUp" for _, reason, ready in seen if ready < 5)


def test_a_start_problem_whose_words_change_gives_one_warning() -> None:
    """The executor's words for a start problem change from pass to pass (the
    kubelet alternates ErrImagePull and ImagePullBackOff while it retries):
    one problem, one reason, one event."""
    status = written_status(3)
    events: list[tuple[str, str]] = []
    for waiting in ("ErrImagePull", "ImagePullBackOff", "ErrImagePull", "ImagePullBackOff"):
        workers = [
            replace(
                worker(n, ready=False, phase="pending", start_problem="ImagePullBackOff"),
                waiting_reason=waiting,
            )
            for n in "abc"
        ]
        actions = run(workers, status=status)
        status = status_of(actions)
        events += [(a.type, a.reason) for a in actions if isinstance(a, EmitEvent)]
        assert condition(actions, "Degraded") == ("True", "ImagePullBackOff")
    assert events == [("Warning", "ImagePullBackOff")]


def all_messages(actions: list[Action]) -> list[str]:
    status = status_of(actions)
    return [
        *(c.message for c in status.conditions),
        *(a.message for a in actions if isinstance(a, EmitEvent | DrainWorker | StopWorker)),
    ]


@pytest.mark.parametrize(
    ("spec", "prev", "workers"),
    [
        (FIXED_1, established(1), [worker("a")]),
        (
            FIXED_1,
            established(1),
            [worker("a", restarts=1, ready=False, crash_looping=True)],
        ),
        (FIXED_1, established(1), [worker("a"), worker("b", draining_for=1, sessions=1)]),
        (FIXED_1, established(2), [worker("a"), worker("b")]),
        (FIXED_1, established(1), [worker("a", OLD)]),
        (
            make_spec(
                minReplicas=1,
                maxReplicas=1,
                autoscaling={"enabled": True, "scaleUpStabilizationSeconds": 0},
            ),
            established(1),
            [worker("a", in_flight=1)],
        ),
        (
            make_spec(minReplicas=1, maxReplicas=3, health={"maxRestarts": 1}),
            established(1),
            [worker("a", restarts=1), starting("n")],
        ),
    ],
)
def test_messages_count_one_worker_in_the_singular(
    spec: BridgePoolSpec, prev: BridgePoolStatus, workers: list[ObservedWorker]
) -> None:
    messages = all_messages(run(workers, spec=spec, status=prev))
    assert messages
    for wrong in ("1 workers", "1 restarts", "1 more workers"):
        assert not [m for m in messages if wrong in m], messages


def test_workers_not_ready_says_since_when_and_why() -> None:
    went_unready = worker("c", ready=False, not_ready_for=40)  # no stats: does not answer
    serving = replace(worker("d", ready=False, not_ready_for=10), stats=stats())
    actions = run([worker("a"), worker("b"), went_unready, serving], status=established(3))
    (degraded,) = [c for c in status_of(actions).conditions if c.type == "Degraded"]
    assert degraded.reason == "WorkersNotReady"
    assert degraded.message == (
        "c: not ready since 2024-05-01T11:59:20Z (readiness check failing; the worker does "
        "not answer its stats call either); d: not ready since 2024-05-01T11:59:50Z "
        "(readiness check failing, though the worker answers as ready: the readiness checks "
        "are not getting through)"
    )
    events = [(a.reason, a.message) for a in actions if isinstance(a, EmitEvent)]
    assert events == [("WorkersNotReady", degraded.message)]
    # The message stays the same pass after pass (no status write, no event).
    later = run(
        [worker("a"), worker("b"), went_unready, serving],
        status=status_of(actions),
        now=NOW + timedelta(seconds=5),
    )
    assert status_of(later).conditions == status_of(actions).conditions
    assert not [a for a in later if isinstance(a, EmitEvent)]


# -- a template the API server refuses ------------------------------------------

REFUSED = 'spec.template.spec.containers[0].name: Invalid value: "Worker_1": ...'


def refused_status(
    planned_from: BridgePoolStatus, actions: list[Action], at: datetime = NOW
) -> tuple[BridgePoolStatus, list[EmitEvent]]:
    """What the executor writes when the API server refuses the pass's pods."""
    return after_creates(
        planned_from,
        status_of(actions),
        revision=REV,
        refused=REFUSED,
        generation=1,
        now=at,
    )


def test_a_refused_template_degrades_the_pool_once_and_keeps_the_observed_pods() -> None:
    prev = established(3)
    workers = [worker("a"), worker("b")]
    actions = run(workers, status=prev)
    assert pod_actions(actions) == [("create", REV)]
    status, events = refused_status(prev, actions)

    assert [(e.type, e.reason, e.message) for e in events] == [
        ("Warning", "InvalidTemplate", REFUSED)
    ]
    assert (status.replicas, status.ready_replicas, status.desired_replicas) == (2, 2, 3)
    assert [w.name for w in status.workers] == ["a", "b"]
    assert status.phase == "Degraded"
    conditions = {c.type: (c.status, c.reason, c.message) for c in status.conditions}
    assert conditions["Degraded"] == ("True", "InvalidTemplate", REFUSED)
    assert conditions["Progressing"][:2] == ("False", "Stalled")
    assert conditions["Ready"][:2] == ("False", "WorkersNotReady")
    assert status.template_rejection is not None
    assert status.template_rejection.attempts == 1


def test_a_refused_template_is_retried_with_backoff_and_warned_about_once() -> None:
    workers = [worker("a"), worker("b")]
    status = established(3)
    attempts_at = []
    events: list[EmitEvent] = []
    now = NOW
    for _ in range(60):  # a pass every 5 s for 5 minutes
        actions = run(workers, status=status, now=now)
        events += [a for a in actions if isinstance(a, EmitEvent)]
        if pod_actions(actions):
            attempts_at.append((now - NOW).total_seconds())
            status, more = refused_status(status, actions, now)
            events += more
        else:
            status = status_of(actions)
            assert condition(actions, "Degraded") == ("True", "InvalidTemplate")
            assert condition(actions, "Progressing") == ("False", "Stalled")
        now += timedelta(seconds=5)
    # 10 s, 20 s, 40 s, 80 s, 160 s after each refused try (on the next pass).
    assert attempts_at == [0, 10, 30, 70, 150]
    assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidTemplate")]


def test_a_new_template_is_tried_at_once_and_a_made_pod_clears_the_refusal() -> None:
    prev = established(3)
    actions = run([worker("a"), worker("b")], status=prev)
    refused, _ = refused_status(prev, actions)
    # The template changed: its pods are tried at once.
    fixed = make_spec(image="bridgepool-worker:2", minReplicas=3, maxReplicas=10)
    again = run([worker("a"), worker("b")], spec=fixed, status=refused)
    assert pod_actions(again) == [("create", revision_of(fixed))] * 2  # surge 1
    assert status_of(again).template_rejection is None
    assert condition(again, "Degraded") != ("True", "InvalidTemplate")
    # Same template, retry due, and this time the API server makes the pod.
    retry = run([worker("a"), worker("b")], status=refused, now=NOW + timedelta(seconds=10))
    assert pod_actions(retry) == [("create", REV)]
    made, events = after_creates(
        refused, status_of(retry), revision=REV, refused=None, generation=1, now=NOW
    )
    assert made.template_rejection is None
    assert events == []


# -- a pass that fails -----------------------------------------------------------


def test_a_failed_pass_shows_on_the_pool_once_per_problem() -> None:
    prev = status_of(run([worker("a"), worker("b"), worker("c")], status=established(3)))
    message = "ValueError: min() arg is an empty sequence"
    actions = unplannable(prev, "pool", 1, "ReconcileError", message, NOW)
    assert pod_actions(actions) == []
    assert [(a.type, a.reason, a.message) for a in actions if isinstance(a, EmitEvent)] == [
        ("Warning", "ReconcileError", message)
    ]
    status = status_of(actions)
    assert condition(actions, "Degraded") == ("True", "ReconcileError")
    assert status.phase == "Degraded"
    assert status.ready_replicas == 3  # the last status otherwise stands
    again = unplannable(status, "pool", 1, "ReconcileError", message, NOW)
    assert not [a for a in again if isinstance(a, EmitEvent)]
    other = unplannable(status, "pool", 1, "ReconcileError", "KeyError: 'x'", NOW)
    assert [a.reason for a in other if isinstance(a, EmitEvent)] == ["ReconcileError"]
    # The next pass that succeeds says what it sees again.
    healed = run([worker("a"), worker("b"), worker("c")], status=status)
    assert condition(healed, "Degraded") == ("False", "Healthy")
    assert status_of(healed).phase == "Running"


def test_a_drain_that_waits_on_sessions_says_who_how_many_and_until_when() -> None:
    """The rollout's last old worker holds one idle session: the status names
    it, its sessions and when the drain gives up, and the rollout is not over."""
    workers = [
        worker("a"),
        worker("b"),
        worker("c"),
        worker("old", OLD, draining_for=60, sessions=1),
    ]
    workers[3] = replace(workers[3], drain_reason="rollout")
    status = status_of(run(workers, status=established(3)))
    (progressing,) = [c for c in status.conditions if c.type == "Progressing"]
    gives_up = NOW + timedelta(seconds=300 - 60)
    assert (progressing.reason, progressing.message) == (
        "Draining",
        "waiting for 1 draining worker: old (rollout): 1 session; "
        f"gives up at {gives_up:%Y-%m-%dT%H:%M:%SZ}",
    )
    assert status.phase == "Progressing"
    (old,) = [w for w in status.workers if w.name == "old"]
    assert (old.state, old.sessions, old.drain_reason) == ("draining", 1, "rollout")
    assert old.drain_deadline == f"{gives_up:%Y-%m-%dT%H:%M:%SZ}"
    ready = [w for w in status.workers if w.name != "old"]
    assert all(w.drain_deadline is None and w.drain_reason is None for w in ready)


INVALID = "spec.replicas cannot be set while spec.autoscaling.enabled is true"


def test_an_invalid_spec_does_not_stop_the_pool_healing_on_its_last_valid_spec() -> None:
    """A worker was force-deleted while the pool's spec was invalid: the pool
    replaces it from the last valid spec, its status counts the pods it sees,
    and it says the spec is invalid, once."""
    actions = plan_invalid(
        "pool", 2, established(3), (SPEC, REV), [worker("a"), worker("b")], INVALID, NOW
    )
    assert pod_actions(actions) == [("create", REV)]
    status = status_of(actions)
    assert (status.replicas, status.ready_replicas, status.desired_replicas) == (2, 2, 3)
    assert status.observed_generation == 2
    assert condition(actions, "Degraded") == ("True", "InvalidSpec")
    assert condition(actions, "Ready") == ("False", "WorkersNotReady")
    assert status.phase == "Invalid"
    events = [(a.type, a.reason, a.message) for a in actions if isinstance(a, EmitEvent)]
    assert events == [("Warning", "InvalidSpec", INVALID)]


def test_an_invalid_spec_with_no_valid_one_before_it_touches_no_pods() -> None:
    actions = plan_invalid("pool", 1, BridgePoolStatus(), None, [], INVALID, NOW)
    assert pod_actions(actions) == []
    assert condition(actions, "Degraded") == ("True", "InvalidSpec")
    assert status_of(actions).phase == "Invalid"


def test_the_load_is_the_workers_time_averaged_in_flight_count_where_they_report_it() -> None:
    # Sampled between two calls, a's count says 0; its average says 1.5.
    a = worker("a", in_flight=0, capacity=2)
    assert a.stats is not None
    a = replace(a, stats=a.stats.model_copy(update={"in_flight_average": 1.5}))
    b = worker("b", in_flight=2, capacity=2)  # a worker that reports no average
    measured = measure_load([a, b])
    assert (measured.in_flight, measured.capacity, measured.workers) == (3.5, 4, 2)
    assert measure_load([replace(a, ready=False), b]).in_flight == 2


def moves(actions: list[Action]) -> list[tuple[str, list[str]]]:
    return [(a.worker, [t.name for t in a.targets]) for a in actions if isinstance(a, MoveSessions)]


def test_a_draining_worker_with_sessions_moves_them_to_current_workers() -> None:
    workers = [
        worker("a"),
        worker("b"),
        worker("c"),
        worker("old", OLD, draining_for=5, sessions=3),
        worker("older", OLD, draining_for=1, sessions=1),
        worker("empty", OLD, draining_for=1, sessions=0),  # deleted, nothing to move
    ]
    actions = run(workers, status=established(3))
    assert moves(actions) == [("old", ["a", "b", "c"]), ("older", ["a", "b", "c"])]
    assert ("delete", "empty") in pod_actions(actions)
    (target, *_) = next(a for a in actions if isinstance(a, MoveSessions)).targets
    assert (target.name, target.url) == ("a", "http://a:8080")


def test_sessions_stay_when_moves_are_off_or_nothing_can_take_them() -> None:
    draining = worker("old", OLD, draining_for=5, sessions=3)
    off = make_spec(minReplicas=3, maxReplicas=10, sessions={"moveOnDrain": False})
    assert moves(run([worker("a"), worker("b"), worker("c"), draining], off)) == []
    unready = [worker(n, ready=False, not_ready_for=1) for n in "abc"]
    assert moves(run([*unready, draining], status=established(3))) == []


def test_a_worker_deleted_from_outside_has_its_sessions_moved_in_its_grace_period() -> None:
    workers = [worker("a"), worker("b"), worker("c"), worker("gone", stopping=True, sessions=2)]
    assert moves(run(workers, status=established(3))) == [("gone", ["a", "b", "c"])]


def test_sessions_that_cannot_move_are_named_in_the_status() -> None:
    """The draining worker says which of its sessions cannot move (it
    remembers their refused exports): observed, not remembered by the executor."""
    draining = worker("old", OLD, draining_for=60, sessions=2)
    assert draining.stats is not None
    said = draining.stats.model_copy(update={"unmovable_sessions": {"session_too_large": 1}})
    draining = replace(draining, drain_reason="rollout", stats=said)
    pool = Pool("pool", 1, SPEC, established(3), REV)
    status = status_of(plan(pool, [worker("a"), worker("b"), worker("c"), draining], NOW))
    (progressing,) = [c for c in status.conditions if c.type == "Progressing"]
    assert "old (rollout): 2 sessions (1 cannot move: session_too_large)" in progressing.message
    (old,) = [w for w in status.workers if w.name == "old"]
    assert old.not_moved == "1 cannot move: session_too_large"

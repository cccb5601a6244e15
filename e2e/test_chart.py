"""BridgePool installed the way users install it: `helm install` of the chart
into `bridgepool-system`, the operator and the router running as pods of
their images, `kubectl apply` of a pool, and calls through the router's
Service.

The suite's release (the ``installed`` fixture of conftest.py) serves the
module: it watches a namespace of pools of its own (and test_tenancy.py's
two), with the NetworkPolicy on (the local cluster enforces it with
kube-router) and the router's authentication on, as the chart ships it. The
tests call the router as the kubeconfig's own user, by the pools' namespaced
routes. Its upgrade and uninstall are tested on a release of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import yaml
from kubernetes import client

from benchmarks.chaos import (
    ABRUPT,
    IDEMPOTENT,
    Faults,
    Load,
    Watch,
    allowed,
    fault_of,
    run_chaos,
    summarize,
)
from bridgepool import labels
from bridgepool.names import owned_session_key
from bridgepool.protocol import HEADER_SESSION_REBOUND, HEADER_WORKER
from bridgepool.workers import pod_ready, worker_url
from e2e import support
from e2e.components import (
    CHART_DIR,
    HelmRelease,
    Installed,
    PodLedger,
    PoolHistory,
    calling,
    chart_values,
    install_crd,
    merge,
    pool_manifest,
    settled,
)
from e2e.monitoring import dashboard_queries
from e2e.prometheus import SCRAPE_SECONDS, prometheus_binary, running_prometheus
from e2e.support import Cluster

pytestmark = pytest.mark.e2e

EXAMPLE_POOL = support.REPO_ROOT / "examples" / "pool.yaml"
POOL = "web"


def start_program(http: httpx.Client, session_url: str) -> tuple[dict[str, Any], str]:
    """Create a program in a session: the call body that runs it, and the
    worker that holds it."""
    created = http.post(
        session_url,
        json={"command": "create_program", "args": {"signature": "question -> answer"}},
    )
    assert created.status_code == 200, created.text
    run = {
        "command": "execute_program",
        "args": {
            "program_id": created.json()["result"]["program_id"],
            "inputs": {"question": "2+2?"},
        },
    }
    return run, created.headers[HEADER_WORKER]


def test_helm_install_runs_the_components_and_the_example_pool_gets_ready(
    cluster: Cluster, installed: Installed, e2e_timings: dict[str, str]
) -> None:
    release, namespace = installed.release, installed.namespace
    for component in ("operator", "router"):
        pods = release.pods(component)
        assert pods and all(pod_ready(p) for p in pods), component
        for pod in pods:
            (container,) = pod.spec.containers
            assert container.security_context.read_only_root_filesystem is True
            assert pod.spec.security_context.run_as_non_root is True
    assert len(release.pods("router")) == 2
    e2e_timings["helm install -> operator and router Ready"] = f"{installed.install_seconds:.1f} s"

    started = time.monotonic()
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE_POOL))
    cluster.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", "bp/example", "--timeout=180s",
        timeout=200,
    )  # fmt: skip
    e2e_timings["kubectl apply example pool -> Ready"] = f"{time.monotonic() - started:.1f} s"
    pool = installed.pools.get("example")
    assert pool["status"]["readyReplicas"] == 2
    # The in-cluster operator read each worker's stats (the NetworkPolicy lets it).
    assert [w["state"] for w in pool["status"]["workers"]] == ["ready", "ready"]

    # The operator ran on the chart's RBAC alone.
    logs = release.logs("operator")
    assert "Forbidden" not in logs and " 403" not in logs, logs[-3000:]


def test_calls_through_the_router_service(installed: Installed) -> None:
    pools = installed.pools
    pools.create(pool_manifest(POOL, "localhost/bridgepool-worker:dev", spec={"replicas": 2}))
    pools.wait(POOL, "2 workers ready", lambda p: settled(p, 2))
    workers = {p.metadata.name for p in pools.pods(POOL)}
    api = installed.api(POOL)
    support.wait_for("the router to see both workers", lambda: installed.router_sees(api, workers))

    with installed.http() as http:
        served_by = set()
        for n in range(8):
            resp = http.post(f"{api}/execute", json={"id": str(n), "command": "ping", "args": {}})
            assert resp.status_code == 200, resp.text
            assert resp.json()["success"] is True
            served_by.add(resp.headers[HEADER_WORKER])
        assert served_by <= workers

        run, holder = start_program(http, f"{api}/sessions/alice/execute")
        answers = []
        for _ in range(5):
            resp = http.post(f"{api}/sessions/alice/execute", json=run)
            assert resp.status_code == 200, resp.text
            # Sticky: both router replicas send the session to the worker holding it.
            assert resp.headers[HEADER_WORKER] == holder
            answers.append(resp.json()["result"]["outputs"])
        assert all(a == answers[0] for a in answers)  # the offline backend is deterministic
        assert http.delete(f"{api}/sessions/alice").status_code == 200
    pools.delete(POOL)


SESSIONS = 20


def generation(pool: dict[str, Any]) -> int:
    return int(pool["metadata"]["generation"])


def programs_in_sessions(
    installed: Installed, api: str, count: int
) -> dict[str, tuple[dict[str, Any], Any]]:
    """``count`` sessions through the router, each with a program: session ->
    (the call that runs its program, the program's answer)."""
    made: dict[str, tuple[dict[str, Any], Any]] = {}
    with installed.http() as http:
        for n in range(count):
            url = f"{api}/sessions/user-{n}/execute"
            run, _ = start_program(http, url)
            answer = http.post(url, json=run)
            assert answer.status_code == 200, answer.text
            made[f"user-{n}"] = (run, answer.json()["result"])
    return made


def same_answers_no_rebound(
    installed: Installed, api: str, sessions: dict[str, tuple[dict[str, Any], Any]]
) -> set[str]:
    """Each session's program answers as before, without a rebound: its state
    moved with it. The workers that answered."""
    workers = set()
    with installed.http() as http:
        for session, (run, answer) in sessions.items():
            resp = http.post(f"{api}/sessions/{session}/execute", json=run)
            assert resp.status_code == 200, (session, resp.text)
            assert HEADER_SESSION_REBOUND not in resp.headers, (session, resp.headers)
            assert resp.json()["result"] == answer, session
            workers.add(resp.headers[HEADER_WORKER])
    return workers


def holders(cluster: Cluster, pods: list[Any]) -> Counter[str]:
    """How many workers hold each session, asked directly (with the pool's
    key): by the key each is kept under on the workers (its owner's,
    :func:`held_as`)."""
    held: Counter[str] = Counter()
    for pod in pods:
        listing = httpx.get(
            f"{worker_url(pod)}/v1/sessions",
            headers=cluster.worker_auth(pod),
            trust_env=False,
            timeout=5,
        ).json()
        held.update(s["session_id"] for s in listing["sessions"])
    return held


def held_as(installed: Installed, sessions: Iterable[str]) -> Counter[str]:
    """Each of the suite's sessions once, by the key the workers keep it under:
    the router keys a session by its owner, here the kubeconfig's user."""
    owner = installed.cluster.username()
    return Counter(owned_session_key(owner, s) for s in sessions)


def test_a_rollout_moves_every_session_with_its_state_and_fails_no_call(
    installed: Installed, core: client.CoreV1Api, e2e_timings: dict[str, str]
) -> None:
    """A rollout of a pool whose workers hold 20 sessions, each with a program,
    under continuous calls: the sessions move to the new workers with their
    programs, so the drains end at once rather than at the sessions' TTL."""
    pools = installed.pools
    spec = {"replicas": 2, "worker": {"capacity": 4}}
    pools.create(pool_manifest("roll", "localhost/bridgepool-worker:dev", spec=spec))
    before = pools.wait("roll", "2 workers ready", lambda p: settled(p, 2))
    old_pods = {p.metadata.name for p in pools.pods("roll")}
    api = installed.api("roll")
    support.wait_for("the router to see both workers", lambda: installed.router_sees(api, old_pods))
    sessions = programs_in_sessions(installed, api, SESSIONS)
    auth = installed.cluster.auth_headers()

    with contextlib.ExitStack() as stack:
        anonymous = stack.enter_context(
            calling(f"{api}/execute", {"command": "ping", "args": {}}, period=0.05, headers=auth)
        )
        callers = [
            stack.enter_context(
                calling(f"{api}/sessions/{s}/execute", run, period=0.3, headers=auth)
            )
            for s, (run, _) in sessions.items()
        ]
        support.wait_for("calls flowing", lambda: all(c.ok > 1 for c in callers))
        template = before["spec"]["template"]
        template["metadata"] = {"labels": {"rollout": "second"}}
        started = time.monotonic()
        patched = pools.patch_spec("roll", {"template": template})
        pools.wait(
            "roll",
            "rollout complete",
            lambda p: (
                settled(p, 2)
                and p["status"]["observedGeneration"] == patched["metadata"]["generation"]
            ),
            timeout=120,
        )
        support.wait_for(
            "the old workers deleted",
            lambda: {p.metadata.name for p in pools.pods("roll")}.isdisjoint(old_pods),
            timeout=120,
        )
        rolled = time.monotonic() - started

    failures = anonymous.failures + [f for c in callers for f in c.failures]
    assert failures == [], failures[:5]
    new_pods = pools.pods("roll")
    assert same_answers_no_rebound(installed, api, sessions) <= {p.metadata.name for p in new_pods}
    assert holders(installed.cluster, new_pods) == held_as(installed, sessions)
    # The old workers went because their sessions had moved, not at a timeout.
    deleted = [
        str(e.message)
        for e in core.list_namespaced_event(
            installed.namespace,
            field_selector=f"involvedObject.kind={labels.KIND},involvedObject.name=roll",
        ).items
        if e.reason == "WorkerDeleted"
    ]
    assert len(deleted) == 2 and all("no sessions left" in m for m in deleted), deleted
    e2e_timings[f"rollout of 2 workers holding {SESSIONS} sessions, all moved"] = f"{rolled:.1f} s"
    pools.delete("roll")


def test_a_router_pod_deleted_under_load_fails_no_call(
    installed: Installed, core: client.CoreV1Api
) -> None:
    pools, release = installed.pools, installed.release
    pools.create(
        pool_manifest(
            "load",
            "localhost/bridgepool-worker:dev",
            spec={"replicas": 2, "worker": {"capacity": 4}},
        )
    )
    pools.wait("load", "2 workers ready", lambda p: settled(p, 2))
    workers = {p.metadata.name for p in pools.pods("load")}
    api = installed.api("load")
    support.wait_for("the router to see both workers", lambda: installed.router_sees(api, workers))
    routers = {p.metadata.name for p in release.pods("router")}
    victim = sorted(routers)[0]
    ping = {"command": "ping", "args": {}}
    auth = release.cluster.auth_headers()

    with (
        calling(f"{api}/execute", ping, period=0.02, headers=auth) as anonymous,
        calling(f"{api}/sessions/s-1/execute", ping, period=0.1, headers=auth) as sticky,
    ):
        support.wait_for("calls flowing", lambda: anonymous.ok > 20)
        release.cluster.kubectl("-n", release.namespace, "delete", "pod", victim, "--wait=false")

        def replaced() -> bool:
            pods = release.pods("router")
            names = {p.metadata.name for p in pods}
            return victim not in names and len(pods) == 2 and all(map(pod_ready, pods))

        support.wait_for("a new router pod ready", replaced, timeout=120)
        support.wait_for_pod_gone(core, release.namespace, victim, timeout=120)
        calls_after = anonymous.ok
        support.wait_for("calls after the change", lambda: anonymous.ok > calls_after + 20)

    assert anonymous.failures == [] and sticky.failures == [], (
        anonymous.failures[:5],
        sticky.failures[:5],
    )
    assert anonymous.ok > 100
    pools.delete("load")


@dataclass
class Watched:
    """A pool through the module's router: its address at the router, the
    pool's first workers, and every status and pod it has while the block runs."""

    api: str
    first: set[str]
    history: PoolHistory
    ledger: PodLedger


@contextlib.contextmanager
def ready_and_watched(
    installed: Installed,
    name: str,
    replicas: int,
    spec: dict[str, Any],
    env: dict[str, str] | None = None,
) -> Iterator[Watched]:
    """Create pool ``name``, wait until its ``replicas`` workers are ready and
    the router sees them, then record its statuses and pods until the block ends."""
    pools = installed.pools
    pools.create(pool_manifest(name, "localhost/bridgepool-worker:dev", spec=spec, env=env))
    pools.wait(name, f"{replicas} ready", lambda p: settled(p, replicas))
    api = installed.api(name)
    first = {p.metadata.name for p in pools.pods(name)}
    support.wait_for(
        f"the router to see {name}'s workers", lambda: installed.router_sees(api, first)
    )
    watched = Watched(
        api,
        first,
        PoolHistory(pools.api, installed.namespace, name),
        PodLedger(pools.api, installed.namespace),
    )
    watched.history.watcher.start()
    watched.ledger.watcher.start()
    try:
        yield watched
    finally:
        watched.history.watcher.stop()
        watched.ledger.watcher.stop()


# Autoscaling: closed-loop callers (each waits for its answer before its next
# call), so the offered load is at most CALLERS calls at once and queueing in
# the router only slows calls down. With WORK seconds per call and CAPACITY
# slots per worker, MAX_WORKERS workers hold the load inside the 60-80 % band.
CALLERS, WORK, CAPACITY, MAX_WORKERS = 6, 0.2, 2, 4
UP_WINDOW, DOWN_WINDOW = 5, 15


def desired_sizes(statuses: list[dict[str, Any]]) -> list[int]:
    """The desired sizes a pool went through, each once, in order."""
    sizes: list[int] = []
    for status in statuses:
        size = status.get("desiredReplicas")
        if size is not None and (not sizes or sizes[-1] != size):
            sizes.append(size)
    return sizes


def test_load_through_the_router_grows_the_pool_inside_the_band_and_it_shrinks_after(
    installed: Installed, e2e_timings: dict[str, str]
) -> None:
    pools = installed.pools
    spec = {
        "minReplicas": 1,
        "maxReplicas": MAX_WORKERS,
        "autoscaling": {
            "enabled": True,
            "scaleUpStabilizationSeconds": UP_WINDOW,
            "scaleDownStabilizationSeconds": DOWN_WINDOW,
        },
        "worker": {"capacity": CAPACITY},
    }
    env = {"BRIDGEPOOL_FAULTS_ENABLED": "1"}  # ping's sleep: calls that hold a slot
    body = {"command": "ping", "args": {"sleep": WORK}}
    with ready_and_watched(installed, "auto", 1, spec, env) as watched:
        history, ledger, api = watched.history, watched.ledger, watched.api
        auth = installed.cluster.auth_headers()
        with contextlib.ExitStack() as stack:
            callers = [
                stack.enter_context(calling(f"{api}/execute", body, period=0, headers=auth))
                for _ in range(CALLERS)
            ]
            load_began = time.monotonic()

            def at_max_and_steady() -> bool:
                pool = pools.get("auto")
                return settled(pool, MAX_WORKERS) and (
                    len([s for _, s in history.timed if s.get("readyReplicas") == MAX_WORKERS])
                    >= 3  # a few passes at the full size: utilization measured there
                )

            support.wait_for(f"the pool grown to {MAX_WORKERS}", at_max_and_steady, timeout=240)
            grown = time.monotonic()
            steady = [s for _, s in history.timed if s.get("readyReplicas") == MAX_WORKERS]
        load_stopped = time.monotonic()
        pools.wait("auto", "the pool back at 1 worker", lambda p: settled(p, 1), timeout=240)
        shrunk = time.monotonic()

    # No call failed at any step.
    failures = [f for c in callers for f in c.failures]
    assert failures == [], failures[:5]
    # It grew one way and shrank one way: no overshoot, no oscillation.
    sizes = desired_sizes(history.statuses)
    peak = sizes.index(max(sizes))
    assert max(sizes) == MAX_WORKERS, sizes
    assert sizes[: peak + 1] == sorted(sizes[: peak + 1]), sizes
    assert sizes[peak:] == sorted(sizes[peak:], reverse=True), sizes
    assert sizes[-1] == 1, sizes
    # Utilization at the full size, once the workers' averages caught up, is in the band.
    settled_utilization = [s["utilization"] for s in steady[-3:] if "utilization" in s]
    assert settled_utilization and all(60 <= u <= 80 for u in settled_utilization), steady[-3:]
    # Every worker it removed was drained first.
    created = ledger.names_with(**{labels.LABEL_POOL: "auto"})
    removed = created - {p.metadata.name for p in pools.pods("auto")}
    assert len(removed) == MAX_WORKERS - 1, (created, removed)
    assert {ledger.drained.get(name) for name in removed} == {"scale-down"}, ledger.drained

    def since(start: float, grew: bool) -> float:
        for t, status in history.timed:
            size = status.get("desiredReplicas") or 0
            if t >= start and (size > 1 if grew else size < MAX_WORKERS):
                return t - start
        return float("nan")

    e2e_timings["autoscaling: load -> first new worker"] = f"{since(load_began, True):.1f} s"
    e2e_timings[f"autoscaling: load -> {MAX_WORKERS} workers ready"] = (
        f"{grown - load_began:.1f} s (scale-up window {UP_WINDOW} s)"
    )
    e2e_timings["autoscaling: load stopped -> first scale-down"] = (
        f"{since(load_stopped, False):.1f} s (scale-down window {DOWN_WINDOW} s)"
    )
    e2e_timings["autoscaling: load stopped -> 1 worker"] = f"{shrunk - load_stopped:.1f} s"
    e2e_timings["autoscaling: utilization at full size"] = f"{settled_utilization} %"
    e2e_timings["autoscaling: slowest call"] = f"{max(c.slowest for c in callers):.2f} s"
    pools.delete("auto")


def evict(core: client.CoreV1Api, namespace: str, pod: str) -> int:
    """Ask the Eviction API (what kubectl drain uses) to take ``pod``: its status."""
    eviction = client.V1Eviction(metadata=client.V1ObjectMeta(name=pod, namespace=namespace))
    try:
        core.create_namespaced_pod_eviction(pod, namespace, eviction)
    except client.ApiException as exc:
        return int(exc.status)
    return 201


def test_evictions_take_one_worker_of_a_pool_at_a_time(
    installed: Installed, core: client.CoreV1Api
) -> None:
    """A node drain evicts through the Eviction API; the pool's
    PodDisruptionBudget lets it take one worker, then refuses (429) until the
    replacement is ready."""
    pools, namespace = installed.pools, installed.namespace
    pools.create(pool_manifest("evict", "localhost/bridgepool-worker:dev", spec={"replicas": 3}))
    pools.wait("evict", "3 workers ready", lambda p: settled(p, 3))
    budget = client.PolicyV1Api(pools.api)

    def budget_allows(n: int) -> bool:
        found = budget.read_namespaced_pod_disruption_budget("evict", namespace)
        return found.status is not None and found.status.disruptions_allowed == n

    support.wait_for("the pool's budget to allow one eviction", lambda: budget_allows(1))
    spec = budget.read_namespaced_pod_disruption_budget("evict", namespace).spec
    assert spec is not None and spec.min_available == 2
    first, second, third = sorted(p.metadata.name for p in pools.pods("evict"))
    assert evict(core, namespace, first) == 201
    # The budget is spent until a replacement is ready: the others stay.
    assert evict(core, namespace, second) == 429
    assert evict(core, namespace, third) == 429
    support.wait_for_pod_gone(core, namespace, first, timeout=120)
    pools.wait("evict", "3 workers ready again", lambda p: settled(p, 3))
    support.wait_for("the budget to allow one eviction again", lambda: budget_allows(1))
    assert evict(core, namespace, second) == 201
    pools.delete("evict")


def test_a_worker_that_reaches_max_requests_is_replaced_new_one_ready_first(
    installed: Installed,
) -> None:
    """Recycling: a worker past spec.worker.maxRequests is drained for
    "recycle" once its replacement is ready; calls go on without a failure."""
    pools = installed.pools
    spec = {"replicas": 2, "worker": {"capacity": 4, "maxRequests": 150}}
    ping = {"command": "ping", "args": {}}
    with ready_and_watched(installed, "recycle", 2, spec) as watched:
        history, ledger, first = watched.history, watched.ledger, watched.first
        url = f"{watched.api}/execute"
        with calling(url, ping, period=0.01, headers=installed.cluster.auth_headers()) as calls:

            def both_recycled() -> bool:
                recycled = {n for n, why in ledger.drained.items() if why == "recycle"}
                now = {p.metadata.name for p in pools.pods("recycle")}
                return first <= recycled and now.isdisjoint(first)

            support.wait_for("both first workers recycled", both_recycled, timeout=240)
        pools.wait("recycle", "2 workers ready", lambda p: settled(p, 2))

    assert calls.failures == [], calls.failures[:5]
    assert calls.ok > 2 * 150
    # The new worker was ready first: the pool never had fewer than 2 ready.
    ready = [int(s["readyReplicas"]) for s in history.statuses if "readyReplicas" in s]
    assert ready and min(ready) >= 2, ready
    assert {why for n, why in ledger.drained.items() if n in first} == {"recycle"}
    pools.delete("recycle")


def test_the_operator_pod_deleted_mid_rollout_finishes_it_without_extra_pods(
    installed: Installed,
) -> None:
    """The operator is also the mover of sessions: killed while the rollout
    moves them, no session is lost or held twice, and no pod is made twice."""
    pools, release = installed.pools, installed.release
    pools.create(pool_manifest("trio", "localhost/bridgepool-worker:dev", spec={"replicas": 3}))
    before = pools.wait("trio", "3 workers ready", lambda p: settled(p, 3))
    api = installed.api("trio")
    first = {p.metadata.name for p in pools.pods("trio")}
    support.wait_for("the router to see the workers", lambda: installed.router_sees(api, first))
    sessions = programs_in_sessions(installed, api, 12)
    (operator_pod,) = release.pods("operator")
    ledger = PodLedger(pools.api, installed.namespace)
    ledger.watcher.start()
    try:
        template = before["spec"]["template"]
        template["metadata"] = {"labels": {"rollout": "second"}}
        patched = pools.patch_spec("trio", {"template": template})
        support.wait_for(
            "an old worker draining, its sessions moving",
            lambda: bool(ledger.drained),
            timeout=60,
        )
        release.cluster.kubectl(
            "-n", release.namespace, "delete", "pod", operator_pod.metadata.name, "--wait=false"
        )
        after = pools.wait(
            "trio",
            "rollout complete",
            lambda p: (
                settled(p, 3)
                and p["status"].get("observedGeneration") == patched["metadata"]["generation"]
            ),
            timeout=240,
        )
        new_revision = after["status"]["updateRevision"]
        support.wait_for(
            "the old workers deleted",
            lambda: all(
                p.metadata.labels[labels.LABEL_REVISION] == new_revision for p in pools.pods("trio")
            ),
            timeout=120,
        )
    finally:
        ledger.watcher.stop()
    (new_operator,) = release.pods("operator")
    assert new_operator.metadata.name != operator_pod.metadata.name
    assert new_revision != before["status"]["updateRevision"]
    made = ledger.names_with(**{labels.LABEL_POOL: "trio", labels.LABEL_REVISION: new_revision})
    assert len(made) == 3, ledger.created  # one new worker per old one, none twice
    assert len(pools.pods("trio")) == 3
    assert same_answers_no_rebound(installed, api, sessions) <= made
    assert holders(installed.cluster, pools.pods("trio")) == held_as(installed, sessions)
    pools.delete("trio")


def test_the_network_policy_admits_only_the_router_and_the_operator(
    installed: Installed, core: client.CoreV1Api
) -> None:
    """The operator's NetworkPolicy beside the pool lets in the release's
    router and operator pods by their labels: a pod that is neither cannot
    reach a worker; one with the router's labels in the release's namespace
    can, and then the worker asks it for the pool's key like any caller.
    (test_worker_access.py goes through every endpoint.)"""
    pools, release, cluster = installed.pools, installed.release, installed.cluster
    made = pools.create(
        pool_manifest("guarded", "localhost/bridgepool-worker:dev", spec={"replicas": 1})
    )
    pools.wait("guarded", "1 worker ready", lambda p: settled(p, 1))
    (worker,) = pools.pods("guarded")
    execute_url = f"{worker_url(worker)}/v1/execute"
    ping = {"command": "ping", "args": {}}
    policy: Any = client.NetworkingV1Api(pools.api).read_namespaced_network_policy(
        labels.network_policy_name("guarded"), installed.namespace
    )
    (owner,) = policy.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid) == (labels.KIND, "guarded", made["metadata"]["uid"])

    support.wait_for(
        "kube-router to enforce the policy on the worker",
        lambda: cluster.policy_enforced_on(worker),
    )

    # A pod beside the workers that is neither the router nor the operator.
    support.start_client_pod(
        core, installed.namespace, "localhost/bridgepool-worker:dev", "intruder"
    )
    intruder = support.HttpClient(cluster, installed.namespace, client_pod="intruder")
    with pytest.raises(support.Unreachable):
        intruder.post_json(execute_url, ping, timeout=5)

    # The same call from a pod with the router's labels, in the release's
    # namespace, gets through the network: the policy admits by who calls,
    # not from where. The worker answers it only with the pool's key.
    router_labels = {
        "app.kubernetes.io/name": "bridgepool",
        "app.kubernetes.io/instance": release.name,
        "app.kubernetes.io/component": "router",
    }
    support.start_client_pod(
        core, release.namespace, "localhost/bridgepool-worker:dev", "router-lookalike",
        router_labels,
    )  # fmt: skip
    try:
        lookalike = support.HttpClient(cluster, release.namespace, "router-lookalike")
        answer = lookalike.post_json(execute_url, ping, timeout=10)
        assert answer.status == 401, answer
        assert answer.body["error"]["type"] == "unauthenticated", answer.body
        key = cluster.worker_headers(installed.namespace, "guarded")
        answer = lookalike.post_json(execute_url, ping, timeout=10, headers=key)
        assert answer.status == 200, answer.body
    finally:
        core.delete_namespaced_pod("router-lookalike", release.namespace, grace_period_seconds=0)

    # Calls through the router work, and the operator still reads stats.
    api = installed.api("guarded")
    support.wait_for(
        "the router to see the worker",
        lambda: installed.router_sees(api, {worker.metadata.name}),
    )
    with installed.http() as http:
        resp = http.post(f"{api}/execute", json=ping)
    assert resp.status_code == 200, resp.text
    status = pools.get("guarded")["status"]
    assert [w["state"] for w in status["workers"]] == ["ready"]
    pools.delete("guarded")


def test_helm_upgrade_and_uninstall(
    cluster: Cluster,
    core: client.CoreV1Api,
    helm: str,
    component_images: None,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A release of its own: upgrade changes the router's replicas and an
    operator setting, and keeps the release key and the scrape token;
    uninstall leaves nothing of the release but the CRD."""
    install_crd(cluster)  # stays after uninstall, as Helm's CRD policy is
    release = HelmRelease(cluster, helm, "second", namespace)
    values = chart_values([namespace], router={"replicas": 1})
    release.install(values, tmp_path / "values.yaml")
    assert len(release.pods("router")) == 1
    (operator_before,) = release.pods("operator")
    secrets_before = (release.release_key(), release.scrape_token())

    upgraded = merge(values, {"router": {"replicas": 3}, "operator": {"intervalSeconds": 7}})
    release.upgrade(upgraded, tmp_path / "values.yaml")
    support.wait_for(
        "3 router pods ready",
        lambda: len(release.pods("router")) == 3 and all(map(pod_ready, release.pods("router"))),
    )
    operators = release.pods("operator")
    assert [p.metadata.name for p in operators] != [operator_before.metadata.name]
    (operator_after,) = operators
    env = {e.name: e.value for e in operator_after.spec.containers[0].env or []}
    assert env["BRIDGEPOOL_OPERATOR_INTERVAL_SECONDS"] == "7"
    # A new key would shut every worker out until the operator rewrote its Secret.
    assert (release.release_key(), release.scrape_token()) == secrets_before

    release.uninstall()
    left = cluster.kubectl(
        "get",
        "deployments,services,poddisruptionbudgets,serviceaccounts,roles,rolebindings,"
        "networkpolicies,secrets,clusterroles,clusterrolebindings",
        "--all-namespaces",
        "-l",
        release.instance_selector,
        "-o",
        "name",
    )
    assert left.strip() == ""
    support.wait_for(
        "the release's pods gone",
        lambda: not release.pods("operator") and not release.pods("router"),
        timeout=90,
    )
    crds = cluster.kubectl("get", "crd", "-o", "name")
    assert f"customresourcedefinition.apiextensions.k8s.io/{labels.PLURAL}.{labels.GROUP}" in crds


def stand_in_crd(kind: str, plural: str) -> dict[str, Any]:
    """A stand-in for one of the Prometheus Operator's CRDs, which cannot be
    fetched here: only so the API server knows the kind in a dry run."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


# What metrics.serviceMonitor renders: ServiceMonitors of the operator and the
# router, and a PodMonitor of the workers.
MONITOR_CRDS = [
    stand_in_crd("ServiceMonitor", "servicemonitors"),
    stand_in_crd("PodMonitor", "podmonitors"),
]


@pytest.mark.parametrize("mode", ["cluster-wide", "namespaced"])
def test_the_rendered_chart_is_accepted_by_the_api_server(
    cluster: Cluster, helm: str, namespace: str, core: client.CoreV1Api, tmp_path: Path, mode: str
) -> None:
    """``helm template`` with every toggle on, applied with a server-side dry
    run. The chart renders no NetworkPolicy: the operator keeps one per pool."""
    crd_file = tmp_path / "monitoring-crds.yaml"
    crd_file.write_text(yaml.safe_dump_all(MONITOR_CRDS))
    cluster.kubectl("apply", "-f", str(crd_file))
    for crd in MONITOR_CRDS:
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}",
            "--timeout=30s",
        )  # fmt: skip
    watched = [namespace] if mode == "namespaced" else []
    scrape_from = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    values = chart_values(
        watched,
        networkPolicy={"enabled": True, "scrapeFrom": scrape_from},
        metrics={"serviceMonitor": {"enabled": True}},
    )
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    release = HelmRelease(cluster, helm, "dry", namespace)
    rendered = release.run(
        "template", "dry", str(CHART_DIR), "--namespace", namespace, "--values", str(values_file)
    )
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(rendered)
    kinds = {d["kind"] for d in yaml.safe_load_all(rendered) if d}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "Secret",
        "ServiceMonitor",
        "PodMonitor",
    } <= kinds
    assert "NetworkPolicy" not in kinds
    assert ("Role" in kinds) == (mode == "namespaced")
    out = cluster.kubectl("apply", "--dry-run=server", "-f", str(manifest))
    assert "(server dry run)" in out


# The faults of the short chaos run. A graceful delete from outside the
# operator (kubectl delete pod), which moves the worker's sessions, is
# test_worker_access.py's and the soak benchmark's; so are a hang and the
# scale faults (the soak's).
CHAOS_FAULTS = [
    "crash",
    "force-delete",
    "unhealthy",
    "rollout",
    "router-restart",
    "operator-restart",
]


def test_a_short_chaos_run_keeps_the_hard_invariants_and_feeds_the_dashboard(
    cluster: Cluster,
    core: client.CoreV1Api,
    installed: Installed,
    tmp_path: Path,
    e2e_timings: dict[str, str],
) -> None:
    """Two and a half minutes of open-loop load through the router while
    workers crash, are force-deleted, go unhealthy and roll, and the router
    and the operator are restarted; a real Prometheus scrapes it all."""
    if prometheus_binary() is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no prometheus on PATH (apt-get install prometheus)")
        pytest.skip("no prometheus on PATH (apt-get install prometheus)")
    pools, release = installed.pools, installed.release
    manifest = pool_manifest(
        "chaos",
        support.WORKER_IMAGE,
        spec={"replicas": 3, "worker": {"capacity": 4}},
        env={"BRIDGEPOOL_FAULTS_ENABLED": "1"},
    )
    pools.create(manifest)
    pools.wait("chaos", "3 workers ready", lambda p: settled(p, 3))
    api = installed.api("chaos")
    workers = {p.metadata.name for p in pools.pods("chaos")}
    support.wait_for("the router to see the workers", lambda: installed.router_sees(api, workers))
    auth = cluster.auth_headers()

    async def run() -> tuple[Load, Watch, Faults]:
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            load = Load(api, rate=30, sessions=10, work_seconds=0.02, headers=auth)
            watch = Watch(pools, "chaos", api, auth)
            faults = Faults(
                cluster, pools, "chaos", release.namespace, release.instance_selector, 3, http
            )
            await run_chaos(load, watch, faults, CHAOS_FAULTS, warmup=15, seconds=150)
        return load, watch, faults

    with running_prometheus(
        core,
        [release.namespace, installed.namespace],
        tmp_path,
        scrape_token=release.scrape_token(),
    ) as prometheus:
        # operator + 2 routers; 3 workers, with the scrape token
        support.wait_for(
            "prometheus to scrape every pod",
            lambda: (
                prometheus.targets_up("bridgepool") >= 3 and prometheus.targets_up("workers") >= 3
            ),
        )
        load, watch, faults = asyncio.run(run())
        summary = summarize(load, watch, faults.records)

        # Every panel of the shipped dashboard has data from this run.
        time.sleep(2 * SCRAPE_SECONDS)  # the last scrape after the run
        empty = [
            f"{title}: {expr}"
            for title, expr in dashboard_queries(rate_interval="1m")
            if not prometheus.query(expr)
        ]
        assert empty == [], "dashboard panels without data:\n" + "\n".join(empty)

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    e2e_timings["chaos run"] = (
        f"{summary.calls} calls, availability {summary.availability:.3%} allowed failures"
        f" apart, {summary.raw_availability:.3%} counting them; detection, recovery: "
        + ", ".join(
            f"{f.kind} {seconds(f.detected)}, {seconds(f.recovered)}" for f in summary.faults
        )
    )
    # No failed call beyond what the product's semantics allow; none at all
    # for idempotent calls, which the router may always retry.
    not_allowed = [
        c for c in load.calls if not c.ok and allowed(c, fault_of(summary.faults, c)) is None
    ]
    assert summary.by_kind[IDEMPOTENT][1] == 0
    # Sessions lose their state only with a worker killed without warning.
    assert set(summary.sessions_lost) <= ABRUPT, summary.sessions_lost
    # The pool is Ready again after every fault.
    assert all(f.recovered is not None for f in summary.faults), summary.faults
    assert not_allowed == [], (
        summary.failures_by_category,
        [(c, fault_of(summary.faults, c)) for c in not_allowed[:5]],
        summary.faults,
    )
    pools.delete("chaos")

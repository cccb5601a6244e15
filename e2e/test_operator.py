"""The operator on a real cluster: `kubectl apply` of a BridgePool gives worker
pods that stay the right size, replace sick workers, and roll to a new template
under load without a failed call or a lost session.

The operator runs out of cluster as a real process (fixtures in conftest.py),
so a test can stop, restart and read it; the workers are pods of the worker
image. test_chart.py runs the operator and the router as the chart installs them.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx
import kopf
import pytest
from kubernetes import client
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from bridgepool import labels
from bridgepool.credentials import KeyDir, PoolKeys
from bridgepool.protocol import WORKER_PORT
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus
from bridgepool.workers import worker_url
from bridgepool_operator.actions import execute
from bridgepool_operator.config import OperatorConfig
from bridgepool_operator.pods import revision_of
from bridgepool_operator.runtime import Runtime
from bridgepool_planner.passes import PassResult
from bridgepool_planner.planner import Action, CreateWorker, UpdateStatus
from e2e import support
from e2e.components import (
    PodLedger,
    PoolHistory,
    Pools,
    Process,
    condition,
    has_condition,
    operator_metrics_url,
    pool_manifest,
    settled,
)
from e2e.support import Cluster

pytestmark = pytest.mark.e2e

POOL = "web"


def events_of(core: client.CoreV1Api, namespace: str, pool: str) -> list[Any]:
    found: list[Any] = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.kind={labels.KIND},involvedObject.name={pool}"
    ).items
    return found


def revision(pool: dict[str, Any]) -> str:
    rev: str = pool["status"]["updateRevision"]
    return rev


def test_applied_pool_gets_its_workers_ready_with_status_and_conditions(
    cluster: Cluster, namespace: str, pools: Pools, operator: Process, worker_image: str
) -> None:
    manifest = pool_manifest(POOL, worker_image, spec={"minReplicas": 2, "maxReplicas": 4})
    created = pools.create(manifest)

    pool = pools.wait(POOL, "2 workers ready", lambda p: settled(p, 2))

    # `kubectl wait` reads the Ready condition as it would a Deployment's.
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"bp/{POOL}", "--timeout=5s")
    status = pool["status"]
    assert status["desiredReplicas"] == 2
    assert status["currentRevision"] == status["updateRevision"]
    assert status["selector"] == labels.pool_selector(POOL)
    assert status["phase"] == "Running"
    assert has_condition(pool, "Degraded", "False", "Healthy")
    assert has_condition(pool, "ScalingLimited", "False")
    assert [w["state"] for w in status["workers"]] == ["ready", "ready"]
    assert all(w["sessions"] == 0 and w["inFlight"] == 0 for w in status["workers"])

    pods = pools.pods(POOL)
    assert sorted(p.metadata.name for p in pods) == sorted(w["name"] for w in status["workers"])
    for pod in pods:
        # Named by the API, owned by the pool, labelled for the router.
        assert pod.metadata.name.startswith(f"{POOL}-")
        (owner,) = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == (
            labels.KIND,
            POOL,
            created["metadata"]["uid"],
        )
        assert owner.controller is True
        assert pod.metadata.labels[labels.LABEL_REVISION] == status["updateRevision"]

    table = cluster.kubectl("-n", namespace, "get", "bp", POOL)
    header, row = table.splitlines()
    assert header.split() == [
        "NAME",
        "DESIRED",
        "READY",
        "UPDATED",
        "UTILIZATION",
        "PHASE",
        "AGE",
        "PROGRESS",
    ]
    assert row.split()[:6] == [POOL, "2", "2", "2", "0", "Running"]
    assert row.endswith("2 workers at revision " + status["updateRevision"])

    metrics = httpx.get(operator_metrics_url(operator), trust_env=False).text
    pool_labels = f'namespace="{namespace}",pool="{POOL}"'
    assert f"bridgepool_operator_pool_ready_workers{{{pool_labels}}} 2.0" in metrics
    assert f"bridgepool_operator_pool_desired_workers{{{pool_labels}}} 2.0" in metrics
    assert 'bridgepool_operator_reconcile_total{result="success"}' in metrics
    assert 'bridgepool_operator_pod_actions_total{action="create"' in metrics
    # SIGTERM stops it cleanly; the workers stay (the fixture starts another
    # operator to clean up).
    assert operator.stop(signal.SIGTERM, timeout=20) == 0, operator.log_tail()
    assert len(pools.pods(POOL)) == 2


def test_kubectl_scale_resizes_the_pool_and_drains_the_surplus(
    cluster: Cluster, namespace: str, pools: Pools, operator: Process, worker_image: str
) -> None:
    pools.create(pool_manifest(POOL, worker_image, spec={"minReplicas": 1, "maxReplicas": 3}))
    pools.wait(POOL, "1 worker ready", lambda p: settled(p, 1))

    history = PoolHistory(pools.api, namespace, POOL)
    history.watcher.start()
    try:
        cluster.kubectl("-n", namespace, "scale", f"bp/{POOL}", "--replicas=3")
        pools.wait(POOL, "3 workers ready", lambda p: settled(p, 3))
    finally:
        history.watcher.stop()
    # While it grew, the established pool kept serving and said it was growing.
    assert {s.get("phase") for s in history.statuses} == {"Running"}, history.statuses
    progressing = history.conditions("Progressing")
    assert progressing[-2:] == [("True", "ScalingUp"), ("False", "Complete")], progressing
    # The scale subresource is what HPA and KEDA read and write.
    scale = json.loads(
        cluster.kubectl(
            "get",
            "--raw",
            f"/apis/{labels.API_VERSION}/namespaces/{namespace}/{labels.PLURAL}/{POOL}/scale",
        )
    )
    assert scale["spec"]["replicas"] == 3
    assert scale["status"] == {"replicas": 3, "selector": labels.pool_selector(POOL)}

    cluster.kubectl("-n", namespace, "scale", f"bp/{POOL}", "--replicas=1")
    pools.wait(POOL, "back to 1 worker", lambda p: settled(p, 1))
    support.wait_for("the drained workers deleted", lambda: len(pools.pods(POOL)) == 1)

    reasons = [(e.reason, e.message, e.count) for e in events_of(pools.core, namespace, POOL)]
    scaled = sorted(m.split(" (")[0] for r, m, _ in reasons if r == "Scaled")
    assert scaled == ["desired workers 1 -> 3", "desired workers 3 -> 1"], reasons
    drained = [m for r, m, _ in reasons if r == "WorkerDraining"]
    assert len(drained) == 2 and all("(scale-down)" in m for m in drained), reasons
    # New workers starting up are not a problem worth a warning.
    assert not [r for r, _, _ in reasons if r == "WorkersNotReady"], reasons


def test_a_worker_whose_container_keeps_dying_is_replaced(
    cluster: Cluster, namespace: str, pools: Pools, operator: Process, worker_image: str
) -> None:
    manifest = pool_manifest(
        POOL,
        worker_image,
        env={"BRIDGEPOOL_FAULTS_ENABLED": "1"},
        spec={"replicas": 2, "health": {"maxRestarts": 1}},
    )
    pools.create(manifest)
    pools.wait(POOL, "2 workers ready", lambda p: settled(p, 2))
    victim = pools.pods(POOL)[0]

    # The `crash` fault ends the worker process at once: the container dies
    # and the kubelet restarts it, which counts against maxRestarts. The
    # worker takes it only with its pool's key, from the Secret the operator wrote.
    with pytest.raises(httpx.TransportError):
        httpx.post(
            f"{worker_url(victim)}/v1/execute",
            json={"id": "1", "command": "fault", "args": {"kind": "crash"}},
            headers=cluster.worker_headers(namespace, POOL),
            timeout=10,
            trust_env=False,
        )

    def replaced(pool: dict[str, Any]) -> bool:
        names = {p.metadata.name for p in pools.pods(POOL)}
        return victim.metadata.name not in names and settled(pool, 2)

    pools.wait(POOL, f"{victim.metadata.name} replaced, 2 workers ready", replaced)
    messages = [e.message for e in events_of(pools.core, namespace, POOL)]
    assert any(
        m.startswith(f"{victim.metadata.name} draining") and m.endswith("1 restart")
        for m in messages
    ), messages
    assert any(m.startswith(f"{victim.metadata.name}: ") for m in messages), messages  # deleted


def test_a_pass_that_fails_part_way_still_reports_the_pods_it_created(
    cluster: Cluster, namespace: str, pools: Pools, worker_image: str, release_keys: Path
) -> None:
    """The operator's pass waits until it can see the pods it created before
    planning again. When a later action fails (here the status write, which
    the API server refuses), the pod made before it must still be on the
    books, or the next pass would create it a second time."""
    made = pools.create(pool_manifest(POOL, worker_image, spec={"replicas": 1}))
    spec = BridgePoolSpec.model_validate(made["spec"])
    refused = BridgePoolStatus.model_construct(desired_replicas=-1)  # the schema says minimum 0
    actions: list[Action] = [CreateWorker(revision_of(spec), "scale-up"), UpdateStatus(refused)]
    posted: list[str] = []
    result = PassResult()

    def post_event(body: Any, /, *, type: str, reason: str, message: str) -> None:
        posted.append(reason)

    async def one_pass() -> None:
        configuration = k8s.Configuration()
        await k8s_config.load_kube_config(
            config_file=str(cluster.kubeconfig), client_configuration=configuration
        )
        async with k8s.ApiClient(configuration) as api, aiohttp.ClientSession() as http:
            keys = PoolKeys(KeyDir(release_keys))
            runtime = Runtime(OperatorConfig(), api, http, keys, post_event=post_event)
            body = kopf.Body(cast(kopf.RawBody, made))
            await execute(runtime, body, spec, actions, {}, result, previous=BridgePoolStatus())

    with pytest.raises(ApiException) as refusal:
        asyncio.run(one_pass())

    assert refusal.value.status == 422
    assert posted == ["WorkerCreated"]
    assert result.created == {p.metadata.name for p in pools.pods(POOL)}
    assert len(result.created) == 1


def test_deleting_the_pool_removes_its_workers(
    namespace: str, pools: Pools, operator: Process, worker_image: str
) -> None:
    pools.create(pool_manifest(POOL, worker_image, spec={"replicas": 2}))
    pools.wait(POOL, "2 workers ready", lambda p: settled(p, 2))

    pools.delete(POOL)

    support.wait_for("the pool gone", lambda: POOL not in pools.names())
    support.wait_for(
        "its worker pods gone",
        lambda: (
            not pools.core.list_namespaced_pod(
                namespace, label_selector=labels.pool_selector(POOL)
            ).items
        ),
        timeout=90,
    )


def test_a_spec_the_schema_rejects_is_refused_with_the_field_named(
    pools: Pools, worker_image: str
) -> None:
    manifest = pool_manifest(POOL, worker_image, spec={"minReplicas": -1})
    with pytest.raises(client.ApiException) as refused:
        pools.create(manifest)
    assert refused.value.status == 422
    assert "spec.minReplicas" in str(refused.value.body)
    assert POOL not in pools.names()


def refusal(exc: client.ApiException) -> dict[str, Any]:
    """The API server's Status body of a refused request."""
    body: dict[str, Any] = json.loads(exc.body or "{}")
    return body


# Each CEL rule of the CRD (x-kubernetes-validations) with a spec that breaks
# it, the field the API server names, and the rule's message.
CEL_REFUSALS = [
    pytest.param(
        {"minReplicas": 3, "maxReplicas": 2},
        "spec.minReplicas",
        "spec.minReplicas must be <= spec.maxReplicas",
        id="min-above-max",
    ),
    pytest.param(
        {"minReplicas": 1, "maxReplicas": 3, "replicas": 5},
        "spec.replicas",
        "spec.replicas must be within [spec.minReplicas, spec.maxReplicas]",
        id="replicas-outside-min-max",
    ),
    pytest.param(
        {"replicas": 2, "autoscaling": {"enabled": True}},
        "spec.replicas",
        "spec.replicas cannot be set while spec.autoscaling.enabled is true",
        id="replicas-with-autoscaling",
    ),
    pytest.param(
        {"autoscaling": {"targetUtilizationLow": 80, "targetUtilizationHigh": 60}},
        "spec.autoscaling.targetUtilizationLow",
        "autoscaling.targetUtilizationLow must be below targetUtilizationHigh",
        id="low-above-high-utilization",
    ),
    pytest.param(
        {"rollout": {"maxSurge": 0, "maxUnavailable": 0}},
        "spec.rollout.maxSurge",
        "rollout.maxSurge and rollout.maxUnavailable cannot both be 0",
        id="no-surge-no-unavailable",
    ),
]


@pytest.mark.parametrize(("spec", "field", "message"), CEL_REFUSALS)
def test_the_api_server_refuses_what_a_cel_rule_forbids_naming_the_field(
    pools: Pools, worker_image: str, spec: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(client.ApiException) as refused:
        pools.create(pool_manifest(POOL, worker_image, spec=spec))
    assert refused.value.status == 422
    causes = refusal(refused.value)["details"]["causes"]
    # The API server puts "Invalid value: ..." before the rule's message.
    assert any(c.get("field") == field and message in c.get("message", "") for c in causes), causes
    assert POOL not in pools.names()


def test_kubectl_scale_of_an_autoscaled_pool_is_refused_naming_replicas(
    cluster: Cluster, namespace: str, pools: Pools, worker_image: str
) -> None:
    """The scale subresource goes through the same CEL rules as the spec."""
    pools.create(pool_manifest(POOL, worker_image, spec={"autoscaling": {"enabled": True}}))
    with pytest.raises(RuntimeError) as refused:
        cluster.kubectl("-n", namespace, "scale", f"bp/{POOL}", "--replicas=2")
    assert "spec.replicas" in str(refused.value)
    assert "cannot be set while spec.autoscaling.enabled is true" in str(refused.value)
    assert "replicas" not in pools.get(POOL)["spec"]


def test_an_image_that_cannot_start_degrades_the_pool_without_churning_pods(
    namespace: str, pools: Pools, operator: Process
) -> None:
    pools.create(
        pool_manifest(POOL, "localhost/bridgepool-no-such-image:dev", spec={"replicas": 1})
    )

    pool = pools.wait(
        POOL,
        "Degraded with the image problem",
        lambda p: has_condition(p, "Degraded", "True", "ErrImageNeverPull"),
    )
    (pod,) = pools.pods(POOL)
    assert pool["status"]["readyReplicas"] == 0
    assert has_condition(pool, "Ready", "False")
    # Not "Complete": the pool cannot get there without a new template.
    assert has_condition(pool, "Progressing", "False", "Stalled")
    wait_passes(operator, 3, "still the same one pod")
    assert [p.metadata.name for p in pools.pods(POOL)] == [pod.metadata.name]
    events = events_of(pools.core, namespace, POOL)
    assert any(e.type == "Warning" and e.reason == "ErrImageNeverPull" for e in events)


def test_a_worker_that_serves_but_fails_its_readiness_checks_is_kept_not_churned(
    namespace: str, pools: Pools, operator: Process, worker_image: str
) -> None:
    """Readiness checks that never pass (here the template's own probe asks for
    a path the worker does not serve) keep the worker out of routing, but the
    worker answers the operator that it is ready: a new pod would fail the
    same checks, so it is not replaced, however long it stays unready."""
    manifest = pool_manifest(
        POOL, worker_image, spec={"replicas": 1, "health": {"startupTimeoutSeconds": 3}}
    )
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    container["readinessProbe"] = {
        "httpGet": {"path": "/no-such-check", "port": WORKER_PORT},
        "periodSeconds": 1,
    }
    ledger = PodLedger(pools.api, namespace)
    ledger.watcher.start()
    try:
        pools.create(manifest)
        pools.wait(
            POOL,
            "Degraded: the worker is not ready",
            lambda p: has_condition(p, "Degraded", "True", "WorkersNotReady"),
        )
        wait_passes(operator, 4, "well past the startup timeout")
        pool = pools.get(POOL)
    finally:
        ledger.watcher.stop()

    assert len(ledger.created) == 1, ledger.created
    assert has_condition(pool, "Degraded", "True", "WorkersNotReady")
    assert [w["state"] for w in pool["status"]["workers"]] == ["degraded"]
    reasons = {e.reason for e in events_of(pools.core, namespace, POOL)}
    assert "WorkerUnhealthy" not in reasons


def metric_value(text: str, series: str) -> float:
    """A sample of the Prometheus text ``text`` (0 when the series is absent)."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def passes_run(operator: Process) -> float:
    """How many passes the operator has run, whatever their result."""
    text = httpx.get(operator_metrics_url(operator), trust_env=False).text
    return sum(
        metric_value(text, f'bridgepool_operator_reconcile_total{{result="{result}"}}')
        for result in ("success", "requeue", "error", "invalid")
    )


def wait_passes(operator: Process, count: int, why: str) -> None:
    """Wait until the operator has run ``count`` more passes: for checks that
    something does not happen, however many times the operator looks."""
    start = passes_run(operator)
    support.wait_for(
        f"{count} more passes ({why})", lambda: passes_run(operator) >= start + count, timeout=60
    )


def test_a_template_the_api_server_refuses_degrades_the_pool_naming_the_field(
    namespace: str, pools: Pools, operator: Process, worker_image: str
) -> None:
    """A container name the API server refuses (no capitals, no "_"): the pool
    says which field and why, warns once, retries with a growing delay, and
    makes its workers as soon as the template is fixed."""
    manifest = pool_manifest(POOL, worker_image, spec={"replicas": 2})
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    container["name"] = "Worker_1"
    pools.create(manifest)

    pool = pools.wait(
        POOL,
        "Degraded: InvalidTemplate",
        lambda p: has_condition(p, "Degraded", "True", "InvalidTemplate"),
    )
    message = (condition(pool, "Degraded") or {})["message"]
    assert message.startswith('spec.template.spec.containers[0].name: Invalid value: "Worker_1"')
    metrics_url = operator_metrics_url(operator)
    passes_before = metric_value(
        httpx.get(metrics_url, trust_env=False).text,
        'bridgepool_operator_reconcile_total{result="success"}',
    )
    wait_passes(operator, 4, "the refused template is not retried at every pass")
    pool = pools.get(POOL)
    metrics = httpx.get(metrics_url, trust_env=False).text

    # The status still tells the pods observed (none) and what it waits for.
    status = pool["status"]
    assert (status["replicas"], status["readyReplicas"], status["desiredReplicas"]) == (0, 0, 2)
    assert status["phase"] == "Degraded"
    assert has_condition(pool, "Progressing", "False", "Stalled")
    assert has_condition(pool, "Ready", "False")
    # Backing off: the first retry comes 10 s after the first try, not every pass.
    passes = metric_value(metrics, 'bridgepool_operator_reconcile_total{result="success"}')
    assert passes - passes_before >= 3
    refused = 'bridgepool_operator_pod_actions_total{action="create-refused",reason="scale-up"}'
    assert metric_value(metrics, refused) <= 2
    assert status["templateRejection"]["attempts"] <= 2
    warnings = [e for e in events_of(pools.core, namespace, POOL) if e.reason == "InvalidTemplate"]
    assert [(e.type, e.message, e.count or 1) for e in warnings] == [("Warning", message, 1)]
    # `kubectl describe bp` shows it "From" the operator.
    assert warnings[0].source.component == labels.MANAGED_BY
    assert warnings[0].reporting_component == labels.MANAGED_BY
    assert "Traceback" not in operator.log.read_text()
    assert pools.pods(POOL) == []

    container["name"] = "worker"
    pools.patch_spec(POOL, {"template": {"spec": {"containers": [container]}}})
    pool = pools.wait(POOL, "2 workers ready", lambda p: settled(p, 2))
    assert has_condition(pool, "Degraded", "False", "Healthy")
    assert "templateRejection" not in pool["status"]


def test_a_typo_in_the_template_is_refused_not_silently_dropped(
    namespace: str, pools: Pools, operator: Process, worker_image: str
) -> None:
    """Fields the Pod API does not know (``imagePullPolcy``, ``resoures``)
    would be dropped without a word, and the pool would run without its
    limits: the operator creates pods with strict field validation, so the
    pool says which fields, and no pod is made without them."""
    manifest = pool_manifest(POOL, worker_image, spec={"replicas": 1})
    (container,) = manifest["spec"]["template"]["spec"]["containers"]
    container["imagePullPolcy"] = "Never"
    container["resoures"] = {"limits": {"memory": "128Mi"}}
    ledger = PodLedger(pools.api, namespace)
    ledger.watcher.start()
    try:
        pools.create(manifest)
        pool = pools.wait(
            POOL,
            "Degraded: InvalidTemplate",
            lambda p: has_condition(p, "Degraded", "True", "InvalidTemplate"),
        )
        wait_passes(operator, 2, "no pod made of the refused template")
    finally:
        ledger.watcher.stop()

    message = (condition(pool, "Degraded") or {})["message"]
    assert 'unknown field "spec.template.spec.containers[0].imagePullPolcy"' in message
    assert 'unknown field "spec.template.spec.containers[0].resoures"' in message
    assert ledger.created == {}
    warnings = [e for e in events_of(pools.core, namespace, POOL) if e.reason == "InvalidTemplate"]
    assert len(warnings) == 1, [(e.reason, e.message) for e in warnings]


def test_a_pass_that_fails_shows_on_the_pool_and_the_pool_recovers(
    namespace: str, pools: Pools, operator: Process, worker_image: str
) -> None:
    """A ResourceQuota of no pods makes every pass fail at its pod create:
    the pool says so (Degraded/ReconcileError with the API server's words)
    with one event and one traceback, not only in the operator's log; once the
    quota goes, the pool gets its worker."""
    quota = {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    pools.core.create_namespaced_resource_quota(namespace, quota)
    support.wait_for(
        "the quota in force",
        lambda: bool(pools.core.read_namespaced_resource_quota("no-pods", namespace).status.hard),
        timeout=30,
    )
    pools.create(pool_manifest(POOL, worker_image, spec={"replicas": 1}))

    pool = pools.wait(
        POOL,
        "Degraded: ReconcileError",
        lambda p: has_condition(p, "Degraded", "True", "ReconcileError"),
    )
    message = (condition(pool, "Degraded") or {})["message"]
    assert message.startswith("the API server answered 403 Forbidden: pods forbidden: "), message
    assert "exceeded quota: no-pods" in message
    wait_passes(operator, 2, "more failed passes, no more events")
    failed = [e for e in events_of(pools.core, namespace, POOL) if e.reason == "ReconcileError"]
    assert [(e.type, e.message, e.count or 1) for e in failed] == [("Warning", message, 1)]
    assert operator.log.read_text().count("Traceback") == 1

    pools.core.delete_namespaced_resource_quota("no-pods", namespace)
    pool = pools.wait(POOL, "1 worker ready", lambda p: settled(p, 1))
    assert has_condition(pool, "Degraded", "False", "Healthy")

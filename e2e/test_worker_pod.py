"""The worker image on a real cluster: readiness, the ping command, graceful
deletion with a call in flight, and a Service in front of two workers.

No operator here: each worker pod mounts a key of the test's own (a Secret
``worker-keys``, as a user running workers by hand would make one) as its key
directory, and the test's calls send that key; a call without it is refused.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from kubernetes import client

from bridgepool import labels as bp_labels
from bridgepool.credentials import KEY_FILE, bearer, new_key
from bridgepool.protocol import HEADER_WORKER, WORKER_PORT
from bridgepool.workers import worker_url
from e2e import support
from e2e.support import HttpAnswer, HttpClient, Unreachable

pytestmark = pytest.mark.e2e

PING: dict[str, Any] = {"id": "1", "command": "ping", "args": {}, "session_id": None}
KEYS_SECRET = "worker-keys"


@pytest.fixture
def key_headers(core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """A new key in the Secret the test's worker pods mount (:func:`worker_pod`):
    the ``Authorization`` header that presents it."""
    key = new_key()
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=KEYS_SECRET), string_data={KEY_FILE: key}
        ),
    )
    return {"Authorization": bearer(key)}


def worker_pod(
    name: str,
    image: str,
    *,
    labels: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
    grace_seconds: int = 30,
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="worker",
                    image=image,
                    image_pull_policy="Never",
                    ports=[client.V1ContainerPort(container_port=WORKER_PORT, name="bridge")],
                    env=[
                        client.V1EnvVar(name=k, value=v)
                        for k, v in {
                            **(env or {}),
                            "BRIDGEPOOL_WORKER_KEYS_DIR": bp_labels.WORKER_KEYS_DIR,
                        }.items()
                    ],
                    volume_mounts=[
                        client.V1VolumeMount(
                            name="keys", mount_path=bp_labels.WORKER_KEYS_DIR, read_only=True
                        )
                    ],
                    readiness_probe=client.V1Probe(
                        http_get=client.V1HTTPGetAction(path="/readyz", port=WORKER_PORT),
                        period_seconds=1,
                        failure_threshold=1,
                    ),
                )
            ],
            volumes=[
                client.V1Volume(
                    name="keys", secret=client.V1SecretVolumeSource(secret_name=KEYS_SECRET)
                )
            ],
            termination_grace_period_seconds=grace_seconds,
        ),
    )


def start_ready_worker(core: client.CoreV1Api, namespace: str, pod: client.V1Pod) -> Any:
    created: Any = core.create_namespaced_pod(namespace, pod)
    return support.wait_for_pod(core, namespace, created.metadata.name)


def execute_url(address: str, port: int = WORKER_PORT) -> str:
    return f"http://{address}:{port}/v1/execute"


def test_worker_becomes_ready_and_answers_ping(
    core: client.CoreV1Api,
    namespace: str,
    worker_image: str,
    http: HttpClient,
    key_headers: dict[str, str],
) -> None:
    # Ready: its readiness probe (/readyz) needs no key.
    pod = start_ready_worker(core, namespace, worker_pod("worker", worker_image))

    answer = http.post_json(f"{worker_url(pod)}/v1/execute", PING, headers=key_headers)

    assert answer.status == 200, answer
    assert answer.body["id"] == "1"
    assert answer.body["success"] is True, answer.body
    assert isinstance(answer.body["result"], dict)
    # Without the key, or with another, the call is refused.
    for headers in ({}, {"Authorization": bearer(new_key())}):
        refused = http.post_json(f"{worker_url(pod)}/v1/execute", PING, headers=headers)
        assert refused.status == 401, refused
        assert refused.body["error"]["type"] == "unauthenticated", refused.body


def test_deleting_a_worker_lets_its_call_in_flight_finish(
    core: client.CoreV1Api,
    namespace: str,
    worker_image: str,
    http: HttpClient,
    key_headers: dict[str, str],
) -> None:
    grace = 60
    slow_seconds = 4.0
    pod = start_ready_worker(
        core,
        namespace,
        worker_pod(
            "worker",
            worker_image,
            # A second slot, so the test can ask the worker while the slow call runs.
            env={"BRIDGEPOOL_FAULTS_ENABLED": "1", "BRIDGEPOOL_WORKER_CAPACITY": "2"},
            grace_seconds=grace,
        ),
    )
    log = support.PodLog(core, namespace, "worker")
    slow_ping = {**PING, "args": {"sleep": slow_seconds}}
    answers: list[HttpAnswer] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            answers.append(
                http.post_json(f"{worker_url(pod)}/v1/execute", slow_ping, headers=key_headers)
            )
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    started = time.monotonic()
    caller.start()

    def slow_call_running() -> bool:
        stats = http.post_json(
            f"{worker_url(pod)}/v1/execute", {**PING, "command": "get_stats"}, headers=key_headers
        )
        return stats.status == 200 and stats.body["result"]["in_flight"] >= 2  # with its own

    support.wait_for("the slow call to reach the worker", slow_call_running)
    core.delete_namespaced_pod("worker", namespace)
    deleted = time.monotonic()
    caller.join(timeout=grace)

    assert not errors, errors
    assert answers, "the call did not return"
    answer = answers[0]
    assert answer.status == 200, answer
    assert answer.body["success"] is True, answer.body
    assert time.monotonic() - started >= slow_seconds
    # The worker exits by itself once its call is done, long before the
    # kubelet's grace period would end in a SIGKILL. Its own last words say
    # so; when the kubelet then removes the pod depends on its load.
    assert log.wait_closed(timeout=grace - (time.monotonic() - deleted) - 5), (
        "the worker was still running well into its grace period"
    )
    stopped = [r for r in log.records() if r.get("message") == "worker stopped"]
    assert stopped and stopped[-1]["exit_code"] == 0, log.lines[-5:]
    support.wait_for_pod_gone(core, namespace, "worker", timeout=120)


def test_service_in_front_of_two_workers_answers_on_its_cluster_ip(
    core: client.CoreV1Api,
    namespace: str,
    worker_image: str,
    http: HttpClient,
    key_headers: dict[str, str],
) -> None:
    labels = {"app.kubernetes.io/name": "bridgepool-worker-e2e"}
    for name in ("worker-a", "worker-b"):
        core.create_namespaced_pod(namespace, worker_pod(name, worker_image, labels=labels))
    service: Any = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="workers"),
            spec=client.V1ServiceSpec(
                selector=labels,
                ports=[client.V1ServicePort(port=80, target_port="bridge", protocol="TCP")],
            ),
        ),
    )
    for name in ("worker-a", "worker-b"):
        support.wait_for_pod(core, namespace, name)

    def both_endpoints_ready() -> bool:
        endpoints = core.read_namespaced_endpoints("workers", namespace)
        return sum(len(s.addresses or []) for s in endpoints.subsets or []) == 2

    support.wait_for("two ready endpoints behind the Service", both_endpoints_ready)
    url = execute_url(service.spec.cluster_ip, port=80)

    # kube-proxy programs the Service a moment after its endpoints change, so
    # call until both workers have answered (each names itself in a header).
    served_by: set[str] = set()
    calls = 0

    def both_workers_served() -> bool:
        nonlocal calls
        calls += 1
        try:
            answer = http.post_json(url, {**PING, "id": str(calls)}, timeout=5, headers=key_headers)
        except Unreachable:
            return False  # not programmed yet
        assert answer.status == 200, answer
        assert answer.body["success"] is True, answer.body
        assert answer.body["id"] == str(calls)
        served_by.add(answer.headers[HEADER_WORKER.lower()])
        return len(served_by) == 2

    support.wait_for("calls through the ClusterIP to reach both workers", both_workers_served)

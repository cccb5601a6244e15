"""Fixtures for tests against a real Kubernetes cluster (see e2e/README.md).

- ``cluster`` (session): the cluster to use, picked by ``support.pick_cluster``;
  the session is skipped with the reason when none can be had.
- ``worker_image`` (session): the worker image, built and loaded into the cluster.
- ``core`` (session): a ``CoreV1Api`` for that cluster.
- ``namespace``: a fresh namespace per test, deleted afterwards; when the test
  fails, its pods, events and container logs go into the test report.
- ``http``: POSTs JSON to pod and Service addresses inside the cluster.
- ``bridgepool_crd`` (session): the BridgePool CRD, applied from ``crds/``.
- ``pools``: BridgePool objects of the test's namespace.
- ``operator``: ``bridgepool-operator`` as a real process serving the test's
  namespace, out of cluster; its log goes into the report of a failed test.
  (test_chart.py installs the operator and the router with the Helm chart.)
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e import support
from e2e.components import Pools, Process, install_crd, operator_process
from e2e.support import Cluster, ClusterUnavailable, HttpClient


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    try:
        picked = support.pick_cluster()
    except ClusterUnavailable as exc:
        pytest.skip(f"no Kubernetes cluster for the e2e suite: {exc}")
    try:
        picked.check_kubectl_skew()
        yield picked
    finally:
        picked.stop()


@pytest.fixture(scope="session")
def core(cluster: Cluster) -> Iterator[client.CoreV1Api]:
    with cluster.api_client() as api:
        yield client.CoreV1Api(api)


@pytest.fixture(scope="session")
def worker_image(cluster: Cluster) -> str:
    image = support.WORKER_IMAGE
    cluster.load_image(image, support.IMAGES[image])
    return image


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    name = f"bp-e2e-{uuid.uuid4().hex[:8]}"
    with support.fresh_namespace(core, name):
        yield name


@pytest.fixture
def http(cluster: Cluster, core: client.CoreV1Api, namespace: str, worker_image: str) -> HttpClient:
    if cluster.direct_http:
        return HttpClient(cluster, namespace, client_pod=None)
    # Where this machine cannot reach pod addresses, call from a pod instead.
    support.start_client_pod(core, namespace, worker_image, "http-client")
    return HttpClient(cluster, namespace, client_pod="http-client")


@pytest.fixture(scope="session")
def bridgepool_crd(cluster: Cluster) -> str:
    install_crd(cluster)
    return "bridgepools.bridgepool.io"


@pytest.fixture
def pools(cluster: Cluster, namespace: str, bridgepool_crd: str) -> Iterator[Pools]:
    with cluster.api_client() as api:
        found = Pools(api, namespace)
        yield found
        found.release()


@pytest.fixture
def components_reachable(cluster: Cluster) -> None:
    if not cluster.direct_http:
        pytest.skip(
            "the operator and router run out of cluster here and must reach pod addresses; "
            "this cluster's pods are not reachable from this machine"
        )


@pytest.fixture
def operator(
    cluster: Cluster,
    namespace: str,
    pools: Pools,
    worker_image: str,
    components_reachable: None,
    tmp_path: Path,
) -> Iterator[Process]:
    proc = operator_process(cluster, [namespace], tmp_path / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        # Pools go while the operator still runs, so kopf lifts its finalizer
        # and the namespace can be deleted.
        if not proc.running:
            proc = operator_process(cluster, [namespace], tmp_path / "operator.log")
            proc.start()
        pools.delete_all()
        proc.stop()


# Durations the suite measures for the record (printed at the end of the run).
TIMINGS: dict[str, str] = {}


@pytest.fixture(scope="session")
def e2e_timings() -> dict[str, str]:
    return TIMINGS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        terminalreporter.section("e2e timings")
        for what, value in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {value}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    # Describe the test's namespace while it still exists (before teardown).
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    namespace = funcargs.get("namespace")
    core = funcargs.get("core")
    if not isinstance(namespace, str) or core is None:
        return
    try:
        text = support.describe_namespace(core, namespace)
    except Exception as exc:  # the report must not hide the test's own failure
        text = f"could not describe namespace {namespace}: {exc!r}"
    report.sections.append((f"cluster state of namespace {namespace}", text))
    proc = funcargs.get("operator")
    if isinstance(proc, Process):
        report.sections.append(("operator log (last lines)", proc.log_tail(200)))

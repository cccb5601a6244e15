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
- ``release_keys`` (session): a release key directory made for the session
  (``bridgepool-keys new``), the one every out-of-cluster component gets.
- ``operator``: ``bridgepool-operator`` as a real process serving the test's
  namespace, out of cluster, with ``release_keys`` and no NetworkPolicy (see
  ``components.operator_process``); its log goes into the report of a failed test.
- ``helm`` (session): the helm binary; ``component_images`` (session): the
  operator's and the router's images, built and loaded.
- ``installed`` (session): the chart installed as users install it, into
  ``bridgepool-system``, with the NetworkPolicy on and the router's
  authentication at the chart's default (on). One release serves the suite:
  test_chart.py's pools, in a namespace of their own, test_tenancy.py's
  two teams, each in its own namespace, and test_worker_access.py's pools, in
  one more.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from e2e import support
from e2e.components import (
    RELEASE_NAMESPACE,
    HelmRelease,
    Installed,
    Pools,
    Process,
    chart_values,
    helm_binary,
    install_crd,
    operator_process,
    write_release_keys,
)
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


@pytest.fixture(scope="session")
def release_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_release_keys(tmp_path_factory.mktemp("release-keys"))


@pytest.fixture
def operator(
    cluster: Cluster,
    namespace: str,
    pools: Pools,
    worker_image: str,
    components_reachable: None,
    release_keys: Path,
    tmp_path: Path,
) -> Iterator[Process]:
    def start() -> Process:
        proc = operator_process(
            cluster, [namespace], tmp_path / "operator.log", keys_dir=release_keys
        )
        proc.start()
        return proc

    proc = start()
    try:
        yield proc
    finally:
        # Pools go while the operator still runs, so kopf lifts its finalizer
        # and the namespace can be deleted.
        if not proc.running:
            proc = start()
        pools.delete_all()
        proc.stop()


@pytest.fixture(scope="session")
def helm() -> str:
    found = helm_binary()
    if found is None:
        pytest.skip("no helm: set BRIDGEPOOL_HELM or put helm on PATH (e2e/cluster/build-tools)")
    return found


@pytest.fixture(scope="session")
def component_images(cluster: Cluster, worker_image: str) -> None:
    for image in ("localhost/bridgepool-operator:dev", "localhost/bridgepool-router:dev"):
        cluster.load_image(image, support.IMAGES[image])


@pytest.fixture(scope="session")
def installed(
    cluster: Cluster,
    core: client.CoreV1Api,
    helm: str,
    component_images: None,
    bridgepool_crd: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installed]:
    """One release for the session: installing the chart takes a while, and
    test_chart.py and test_tenancy.py both need it as users install it."""
    if not cluster.direct_http:
        pytest.skip("these tests call the router's ClusterIP from this machine")
    suffix = f"{time.monotonic_ns() % 10**8:08d}"
    pool_namespace = f"bp-e2e-{suffix}"
    tenants = (f"team-a-{suffix}", f"team-b-{suffix}")
    access = f"access-{suffix}"
    watched = [pool_namespace, *tenants, access]
    release = HelmRelease(cluster, helm, "bridgepool", RELEASE_NAMESPACE)
    values = chart_values(watched, networkPolicy={"enabled": True})
    with contextlib.ExitStack() as stack:
        for name in watched:
            stack.enter_context(support.fresh_namespace(core, name))
        api = stack.enter_context(cluster.api_client())
        seconds = release.install(values, tmp_path_factory.mktemp("helm") / "values.yaml")
        pools = Pools(api, pool_namespace)
        try:
            yield Installed(release, pools, seconds, tenants, access)
        finally:
            # The operator lifts kopf's finalizers while it still runs.
            for namespace in watched:
                Pools(api, namespace).delete_all(timeout=120)
            release.uninstall()


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
    # Describe the test's namespaces while they still exist (before teardown).
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    core = funcargs.get("core")
    installed = funcargs.get("installed")
    namespaces = [funcargs["namespace"]] if isinstance(funcargs.get("namespace"), str) else []
    if isinstance(installed, Installed) and "teams" in funcargs:  # test_tenancy.py
        namespaces += installed.tenants
    if isinstance(installed, Installed) and "access_pools" in funcargs:  # test_worker_access.py
        namespaces.append(installed.access)
    for namespace in namespaces:
        if core is None:
            break
        try:
            text = support.describe_namespace(core, namespace)
        except Exception as exc:  # the report must not hide the test's own failure
            text = f"could not describe namespace {namespace}: {exc!r}"
        report.sections.append((f"cluster state of namespace {namespace}", text))
    if isinstance(installed, Installed):
        try:
            text = "\n".join(installed.release.logs("router").splitlines()[-200:])
        except Exception as exc:
            text = f"could not read the router's log: {exc!r}"
        report.sections.append(("router log (last lines)", text))
    proc = funcargs.get("operator")
    if isinstance(proc, Process):
        report.sections.append(("operator log (last lines)", proc.log_tail(200)))

"""A real Prometheus (Debian's ``prometheus`` package) scraping BridgePool's
components on the cluster, for tests that check the shipped dashboard and
alerts against live data.

Debian builds Prometheus without Kubernetes service discovery, so a thread
here lists the pods every second and writes them to files that Prometheus
watches (file-based discovery): each container port named ``metrics``
(operator) or ``http`` (router) is a target of one job, each named ``bridge``
(worker) of another, labelled with its pod and namespace, and a worker's
series get its pool's name from the pod label, as a ServiceMonitor/PodMonitor
setup would add it. As the chart's ServiceMonitors do, the first job honors
the labels a target exports: the router's and the operator's `namespace` is
the pool's, not their pod's. As the chart's PodMonitor does, the workers' job
sends the release's scrape token (a worker's ``/metrics`` answers nothing
else but its pool's key). It runs on this machine, so it needs one that
reaches pod addresses.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client

from bridgepool import labels
from e2e.support import wait_for

SCRAPE_SECONDS = 2


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


# The job of each scraped port name: the components' own ports, the workers'.
SCRAPED_PORTS = {"metrics": "bridgepool", "http": "bridgepool", "bridge": "workers"}
JOBS = ("bridgepool", "workers")


def _config(targets: Mapping[str, Path], token_file: Path) -> dict[str, Any]:
    def discovery(job: str) -> list[dict[str, Any]]:
        return [{"files": [str(targets[job])], "refresh_interval": "1s"}]

    return {
        "global": {
            "scrape_interval": f"{SCRAPE_SECONDS}s",
            "evaluation_interval": f"{SCRAPE_SECONDS}s",
        },
        "scrape_configs": [
            {
                "job_name": "bridgepool",
                # The router's and the operator's `namespace` is the pool's (as honorLabels).
                "honor_labels": True,
                "file_sd_configs": discovery("bridgepool"),
            },
            {
                "job_name": "workers",
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "file_sd_configs": discovery("workers"),
            },
        ],
    }


def _targets(core: client.CoreV1Api, namespaces: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """The file_sd entries for the pods of ``namespaces``, per job."""
    found: dict[str, list[dict[str, Any]]] = {job: [] for job in JOBS}
    for namespace in namespaces:
        pods: Any = core.list_namespaced_pod(namespace)
        for pod in pods.items:
            if not pod.status.pod_ip or pod.metadata.deletion_timestamp is not None:
                continue
            target_labels = {"pod": pod.metadata.name, "namespace": namespace}
            pool = (pod.metadata.labels or {}).get(labels.LABEL_POOL)
            if pool:
                target_labels["pool"] = pool
            for container in pod.spec.containers:
                for port in container.ports or []:
                    if port.name in SCRAPED_PORTS:
                        address = f"{pod.status.pod_ip}:{port.container_port}"
                        entry = {"targets": [address], "labels": target_labels}
                        found[SCRAPED_PORTS[port.name]].append(entry)
    return found


def _write_targets(path: Path, targets: list[dict[str, Any]]) -> None:
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(targets))
    partial.replace(path)  # Prometheus never reads half a file


class Prometheus:
    """The HTTP API of a running Prometheus."""

    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) ``expr`` gives now; raises on a bad query."""
        resp = httpx.get(
            f"{self.url}/api/v1/query", params={"query": expr}, trust_env=False, timeout=10
        )
        body = resp.json()
        if body.get("status") != "success":
            raise AssertionError(f"query {expr!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def targets_up(self, job: str | None = None) -> int:
        """How many targets (of ``job``, or of every job) the last scrape reached."""
        resp = httpx.get(f"{self.url}/api/v1/targets", trust_env=False, timeout=10)
        active = resp.json()["data"]["activeTargets"]
        return sum(
            1
            for t in active
            if t["health"] == "up" and (job is None or t["labels"].get("job") == job)
        )


@contextmanager
def running_prometheus(
    core: client.CoreV1Api, namespaces: Sequence[str], workdir: Path, *, scrape_token: str
) -> Iterator[Prometheus]:
    """Prometheus scraping the pods of ``namespaces``; the workers with
    ``scrape_token`` (the release's, :meth:`~e2e.components.HelmRelease.scrape_token`)."""
    binary = prometheus_binary()
    if binary is None:
        raise RuntimeError("no prometheus on PATH (apt-get install prometheus)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token_file = workdir / "scrape-token"
    token_file.touch(mode=0o600)
    token_file.write_text(scrape_token)
    targets = {job: workdir / f"targets-{job}.json" for job in JOBS}

    def write_all() -> None:
        found = _targets(core, namespaces)
        for job, path in targets.items():
            _write_targets(path, found[job])

    write_all()
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(Exception):  # a failed list: keep the last targets
                write_all()

    refresher = threading.Thread(target=refresh, daemon=True)
    refresher.start()
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(_config(targets, token_file)))
    log = (workdir / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    prom = Prometheus(f"http://127.0.0.1:{port}")
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                output = (workdir / "prometheus.log").read_text()
                raise AssertionError(f"prometheus exited: {output}")
            try:
                return httpx.get(f"{prom.url}/-/ready", trust_env=False).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("prometheus ready", ready, timeout=30)
        yield prom
    finally:
        stop.set()
        refresher.join(5)
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()

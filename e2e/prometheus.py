"""A real Prometheus (Debian's ``prometheus`` package) scraping BridgePool's
components on the cluster, for tests that check the shipped dashboard and
alerts against live data.

Debian builds Prometheus without Kubernetes service discovery, so a thread
here lists the pods every second and writes them to a file that Prometheus
watches (file-based discovery): each container port named ``metrics``
(operator), ``http`` (router) or ``bridge`` (worker) is a target, labelled
with its pod and namespace, and a worker's series get its pool's name from
the pod label, as a ServiceMonitor/PodMonitor setup would add it. As the
chart's ServiceMonitors do, it honors the labels a target exports: the
router's and the operator's `namespace` is the pool's, not their pod's. It runs
on this machine, so it needs one that reaches pod addresses.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
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


SCRAPED_PORTS = {"metrics", "http", "bridge"}


def _config(targets_file: Path) -> dict[str, Any]:
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
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}],
            }
        ],
    }


def _targets(core: client.CoreV1Api, namespaces: Sequence[str]) -> list[dict[str, Any]]:
    """The file_sd entries for the pods of ``namespaces``."""
    found: list[dict[str, Any]] = []
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
                        found.append({"targets": [address], "labels": target_labels})
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

    def targets_up(self) -> int:
        resp = httpx.get(f"{self.url}/api/v1/targets", trust_env=False, timeout=10)
        active = resp.json()["data"]["activeTargets"]
        return sum(1 for t in active if t["health"] == "up")


@contextmanager
def running_prometheus(
    core: client.CoreV1Api, namespaces: Sequence[str], workdir: Path
) -> Iterator[Prometheus]:
    binary = prometheus_binary()
    if binary is None:
        raise RuntimeError("no prometheus on PATH (apt-get install prometheus)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    targets_file = workdir / "targets.json"
    _write_targets(targets_file, _targets(core, namespaces))
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(Exception):  # a failed list: keep the last targets
                _write_targets(targets_file, _targets(core, namespaces))

    refresher = threading.Thread(target=refresh, daemon=True)
    refresher.start()
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(_config(targets_file)))
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

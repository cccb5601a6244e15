"""Where the operator asks a worker for its stats: the container port named
``bridge`` (a template may choose its own), an IPv6 address in brackets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridgepool.protocol import WorkerStats
from bridgepool.worker_http import WorkerHttp
from bridgepool.workers import worker_url
from bridgepool_operator.index import index_pod
from bridgepool_operator.observe import observe
from tests.worker.conftest import Workers


def pod(ip: str | None, port: int | None = None, phase: str = "Running") -> dict[str, Any]:
    ports = [{"name": "bridge", "containerPort": port}] if port else []
    return {
        "metadata": {"name": "w"},
        "spec": {"containers": [{"name": "worker", "ports": ports}]},
        "status": {"phase": phase, "podIP": ip},
    }


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    yield started
    started.stop_all()


def test_stats_come_from_the_templates_own_bridge_port(workers: Workers) -> None:
    worker = workers.start(env={"BRIDGEPOOL_WORKER_NAME": "on-its-own-port"})
    url = worker_url(pod("127.0.0.1", worker.port))
    assert url == f"http://127.0.0.1:{worker.port}"
    stats = WorkerStats.model_validate(worker.client.get(url + "/v1/stats").json())  # pool key
    assert stats.worker == "on-its-own-port"


@pytest.mark.parametrize(
    ("observed", "url"),
    [
        (pod("10.0.0.7"), "http://10.0.0.7:8080"),
        (pod("fd00::7", 9000), "http://[fd00::7]:9000"),
        (pod(None, phase="Pending"), None),
        (pod("10.0.0.7", phase="Failed"), None),
    ],
)
def test_worker_url(observed: dict[str, Any], url: str | None) -> None:
    assert worker_url(observed) == url


async def test_the_operator_reads_stats_where_the_pod_index_says(workers: Workers) -> None:
    """The pod index keeps the container ports, and observe asks there: a
    template that names its own ``bridge`` port is read on that port (the
    operator used to ask 8080, whatever the pod said)."""
    worker = workers.start(env={"BRIDGEPOOL_WORKER_NAME": "indexed"})
    body = pod("127.0.0.1", worker.port)
    meta = {
        "name": "w",
        "ownerReferences": [
            {"apiVersion": "bridgepool.io/v1alpha1", "kind": "BridgePool", "name": "demo"}
        ],
    }
    ((_, entry),) = index_pod("ns", meta, body).items()
    async with aiohttp.ClientSession() as http:
        (observed,) = await observe(WorkerHttp(http, workers.keys), [entry])
    assert observed.stats is not None and observed.stats.worker == "indexed"

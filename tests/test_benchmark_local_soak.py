"""The local soak's pure parts: its pool, its cluster column, its per-fault status view."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from benchmarks import soak
from benchmarks.chaos import FaultRecord, Load, Sample, Watch, summarize
from benchmarks.local_soak import (
    CLUSTER_COLUMN,
    CLUSTER_FIGURES,
    comparison,
    status_showed,
)
from bridgepool_local.manifest import parse_pool


async def no_pool() -> Mapping[str, Any]:
    return {}


def empty_watch() -> Watch:
    return Watch(no_pool, soak.POOL, "http://127.0.0.1:1/v1/namespaces/default/pools/soak")


def test_the_cluster_figures_name_the_seed_metrics_the_table_prints() -> None:
    load = Load("http://127.0.0.1:1", rate=1, sessions=1)
    summary = summarize(load, empty_watch(), [])
    metrics = [row[0] for row in soak.seed_rows(summary, load)]
    assert set(CLUSTER_FIGURES) <= set(metrics)
    header, *rows = comparison(summary, load)
    assert CLUSTER_COLUMN in header
    assert all(CLUSTER_FIGURES.get(m, "-") in row for m, row in zip(metrics, rows, strict=True))


def test_bridgepool_run_takes_the_soak_pool(tmp_path: Path) -> None:
    manifest = soak.pool_manifest(2, capacity=4)
    pool = parse_pool(yaml.safe_dump(manifest), tmp_path / "pool.yaml")
    assert (pool.spec.min_replicas, pool.spec.max_replicas) == (2, 8)
    assert pool.spec.worker.capacity == 4
    env = pool.spec.template.spec.containers[0].model_dump(by_alias=True)["env"]
    assert {"name": "BRIDGEPOOL_FAULTS_ENABLED", "value": "1"} in env


def test_the_status_view_of_a_fault_counts_from_when_the_status_showed_it() -> None:
    watch = empty_watch()
    watch.samples = [
        Sample(99.0, desired=2, ready=2, pool_ready=True),
        # The fault not seen yet: the seed's recovery ends here.
        Sample(100.5, desired=2, ready=2, pool_ready=True),
        Sample(103.0, desired=2, ready=1, pool_ready=False),
        Sample(104.0, desired=2, ready=1, pool_ready=True),  # Ready, short of a worker
        Sample(106.0, desired=2, ready=2, pool_ready=True),
    ]
    fault = FaultRecord("graceful-stop", 100.0, "soak-abcde", expected_workers=2)
    assert watch.pool_settled_after(fault.at, 2) == 0.5
    assert status_showed(watch, fault) == (3.0, 6.0)


def test_a_fault_the_status_never_showed() -> None:
    watch = empty_watch()
    watch.samples = [Sample(t, desired=2, ready=2, pool_ready=True) for t in (101.0, 120.0)]
    fault = FaultRecord("unhealthy", 100.0, "soak-abcde", expected_workers=2)
    assert status_showed(watch, fault) == (None, None)

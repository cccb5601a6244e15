"""The pool's YAML read for one machine: the CRD's checks and messages, the
fields that mean nothing here named, and what a worker's revision covers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bridgepool.names import PoolRef
from bridgepool.spec import BridgePoolSpec
from bridgepool_local.cli import pool_ref_of
from bridgepool_local.manifest import (
    PoolFileError,
    load_pool,
    parse_pool,
    unsupported_fields,
    worker_recipe,
)
from bridgepool_local.processes import STATE_DIR_VARIABLE, stop_strays
from bridgepool_operator.loop import invalid_spec_message
from tests.local.conftest import alive, pool_yaml
from tests.router.conftest import wait_until

SOURCE = Path("pool.yaml")


def parsed(manifest: dict[str, Any]) -> Any:
    return parse_pool(yaml.safe_dump(manifest), SOURCE)


@pytest.mark.parametrize(
    "spec",
    [
        {"minReplicas": 3, "maxReplicas": 2},
        {"rollout": {"maxSurge": 0, "maxUnavailable": 0}},
        {"minReplicas": -1},
        {"autoscaling": {"targetUtilizationLow": 80, "targetUtilizationHigh": 60}},
    ],
)
def test_a_bad_spec_is_refused_with_the_operators_message(spec: dict[str, Any]) -> None:
    manifest = pool_yaml(**spec)
    with pytest.raises(ValidationError) as err:
        BridgePoolSpec.model_validate(manifest["spec"])
    with pytest.raises(PoolFileError) as refused:
        parsed(manifest)
    assert str(refused.value) == f"pool.yaml: {invalid_spec_message(err.value)}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "Deployment"}, "expected apiVersion bridgepool.io/v1alpha1 and kind BridgePool"),
        ({"metadata": {}}, "metadata.name: metadata.name is required"),
        ({"metadata": {"name": "Not_A_Name"}}, "metadata.name:"),
        ({"metadata": {"name": "ok", "namespace": "-bad"}}, "metadata.namespace:"),
    ],
)
def test_a_bad_object_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PoolFileError) as refused:
        parsed({**pool_yaml(), **change})
    assert message in str(refused.value)


def test_not_yaml_and_a_missing_file_are_named(tmp_path: Path) -> None:
    with pytest.raises(PoolFileError, match=r"pool\.yaml: not valid YAML"):
        parse_pool("kind: [", SOURCE)
    with pytest.raises(PoolFileError, match="cannot read: No such file or directory"):
        load_pool(tmp_path / "missing.yaml")


def test_the_pool_is_in_namespace_default_unless_the_yaml_names_one() -> None:
    assert str(parsed(pool_yaml()).ref) == "default/local"
    named = pool_yaml()
    named["metadata"]["namespace"] = "team-a"
    assert str(parsed(named).ref) == "team-a/local"


def test_template_fields_with_no_meaning_here_are_named() -> None:
    manifest = pool_yaml()
    pod = manifest["spec"]["template"]["spec"]
    pod["nodeSelector"] = {"disk": "ssd"}
    pod["volumes"] = [{"name": "data", "emptyDir": {}}]
    worker = pod["containers"][0]
    worker["resources"] = {"limits": {"memory": "1Gi"}}
    worker["env"].append({"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s"}}})
    pod["containers"].append({"name": "sidecar", "image": "proxy"})
    assert unsupported_fields(parsed(manifest).spec) == [
        "spec.template.spec.nodeSelector",
        "spec.template.spec.volumes",
        "spec.template.spec.containers[0].resources",
        "spec.template.spec.containers[1] (a sidecar)",
        "spec.template.spec.containers[0].env[1] (TOKEN: valueFrom)",
    ]
    assert unsupported_fields(parsed(pool_yaml()).spec) == []


def test_the_revision_covers_the_handler_files_args_and_env_not_the_size(tmp_path: Path) -> None:
    handlers = tmp_path / "handlers.py"
    handlers.write_text("# one\n")
    keys = tmp_path / "keys"

    def revision(manifest: dict[str, Any]) -> str:
        return worker_recipe(parsed(manifest), keys, handlers=[handlers]).revision

    base = revision(pool_yaml())
    assert revision(pool_yaml(minReplicas=3)) == base
    with_args = pool_yaml()
    with_args["spec"]["template"]["spec"]["containers"][0]["args"] = ["--log-level", "debug"]
    assert revision(with_args) != base
    with_env = pool_yaml()
    with_env["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    assert revision(with_env) != base
    assert revision(pool_yaml(worker={"capacity": 3})) != base  # a worker setting
    handlers.write_text("# two\n")
    assert revision(pool_yaml()) != base

    recipe = worker_recipe(parsed(with_args), keys, handlers=[handlers])
    assert recipe.argv[-4:] == ("--log-level", "debug", "--handlers", str(handlers))
    assert recipe.env["BRIDGEPOOL_WORKER_KEYS_DIR"] == str(keys)
    assert recipe.env["BRIDGEPOOL_FAULTS_ENABLED"] == "1"
    with pytest.raises(PoolFileError, match=r"handler file .*gone\.py: No such file"):
        worker_recipe(parsed(pool_yaml()), keys, handlers=[tmp_path / "gone.py"])


def test_strays_of_an_earlier_supervisor_are_stopped_and_nothing_else(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "pids").mkdir(parents=True)
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    ours = subprocess.Popen(sleep, env={**os.environ, STATE_DIR_VARIABLE: str(state)})
    other = subprocess.Popen(sleep)  # its pid listed, but not started by this state dir
    try:
        (state / "pids" / "w-1.pid").write_text(str(ours.pid))
        (state / "pids" / "w-2.pid").write_text(str(other.pid))
        assert stop_strays(state) == [ours.pid]
        ours.wait(10)
        assert ours.returncode == -signal.SIGKILL
        assert alive(other.pid)
        assert not list((state / "pids").glob("*.pid"))
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()
    wait_until(lambda: not alive(other.pid), 5, "the other process gone")


def test_status_finds_the_pool_a_yaml_names_even_when_its_spec_is_invalid(
    tmp_path: Path,
) -> None:
    """That is when its status (Degraded/InvalidSpec) is wanted most."""
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump(pool_yaml(minReplicas=5, maxReplicas=4)))
    assert pool_ref_of(path) == PoolRef("default", "local")
    path.write_text("kind: [")
    with pytest.raises(PoolFileError, match="not valid YAML"):
        pool_ref_of(path)

"""The BridgePool spec model and the CRD generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from bridgepool.spec import BridgePoolSpec, BridgePoolStatus
from bridgepool_operator.crd import build_crd, render_crd

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "bridgepool.io_bridgepools.yaml"

TEMPLATE = {"spec": {"containers": [{"name": "worker", "image": "bridgepool-worker:dev"}]}}


def spec(**fields: Any) -> dict[str, Any]:
    return {"template": TEMPLATE, **fields}


def test_committed_crd_matches_models() -> None:
    assert CRD_FILE.read_text() == render_crd(), (
        "crds/ is stale: run `python -m bridgepool_operator.crd > " + str(CRD_FILE) + "`"
    )


def test_example_pool_is_valid() -> None:
    pool = yaml.safe_load((REPO / "examples" / "pool.yaml").read_text())
    parsed = BridgePoolSpec.model_validate(pool["spec"])
    assert parsed.min_replicas <= parsed.max_replicas


def test_defaults() -> None:
    s = BridgePoolSpec.model_validate(spec())
    assert (s.min_replicas, s.max_replicas, s.replicas, s.fixed_replicas) == (1, 10, None, 1)
    assert (s.autoscaling.target_utilization_low, s.autoscaling.target_utilization_high) == (
        60.0,
        80.0,
    )
    assert s.autoscaling.target_middle == pytest.approx(0.7)
    assert (s.health.interval_seconds, s.health.replace_after_failures) == (30, 3)
    assert (s.rollout.max_surge, s.rollout.max_unavailable) == (1, 0)
    assert s.worker.capacity == 1
    assert s.routing.retries.max_attempts == 3


def test_template_keeps_unknown_pod_fields() -> None:
    template = {
        "metadata": {"labels": {"team": "a"}, "namespace": "ignored-but-kept"},
        "spec": {
            "nodeSelector": {"x": "y"},
            "containers": [
                {"name": "w", "image": "i", "env": [{"name": "A", "value": "1"}], "args": ["x"]}
            ],
        },
    }
    s = BridgePoolSpec.model_validate({"template": template})
    dumped = s.model_dump(by_alias=True, exclude_none=True)["template"]
    assert dumped["spec"]["nodeSelector"] == {"x": "y"}
    assert dumped["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}]
    assert dumped["metadata"]["namespace"] == "ignored-but-kept"


@pytest.mark.parametrize(
    ("fields", "names"),
    [
        ({"minReplicas": 5, "maxReplicas": 3}, "spec.minReplicas"),
        ({"minReplicas": 2, "maxReplicas": 4, "replicas": 7}, "spec.replicas"),
        ({"replicas": 2, "autoscaling": {"enabled": True}}, "spec.autoscaling.enabled"),
        (
            {"autoscaling": {"targetUtilizationLow": 80, "targetUtilizationHigh": 60}},
            "autoscaling.targetUtilizationLow",
        ),
        ({"rollout": {"maxSurge": 0, "maxUnavailable": 0}}, "rollout.maxSurge"),
        ({"minReplicas": -1}, "minReplicas"),
        ({"worker": {"capacity": 0}}, "capacity"),
        ({"health": {"intervalSeconds": 0}}, "intervalSeconds"),
        ({"unknownField": 1}, "unknownField"),
        ({"template": {"spec": {"containers": []}}}, "containers"),
        ({"template": {"spec": {"containers": [{"name": "w"}]}}}, "image"),
    ],
)
def test_bad_specs_name_the_field(fields: dict[str, Any], names: str) -> None:
    with pytest.raises(ValidationError) as err:
        BridgePoolSpec.model_validate(spec(**fields))
    assert names in str(err.value)


def test_crd_shape() -> None:
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["bp"]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Desired", "Ready", "Utilization", "Phase", "Age"]
    root = version["schema"]["openAPIV3Schema"]
    spec_schema = root["properties"]["spec"]
    rules = [v["message"] for v in spec_schema["x-kubernetes-validations"]]
    assert any("spec.minReplicas" in r for r in rules)
    assert spec_schema["properties"]["minReplicas"]["default"] == 1
    band = spec_schema["properties"]["autoscaling"]
    assert band["default"] == {}
    assert band["properties"]["targetUtilizationHigh"]["exclusiveMinimum"] is True
    template = spec_schema["properties"]["template"]["properties"]["spec"]
    assert template["x-kubernetes-preserve-unknown-fields"] is True
    status = root["properties"]["status"]
    assert status["properties"]["workers"]["maxItems"] == 50


def _walk(node: Any, path: str = "") -> list[str]:
    """Paths of schema nodes that break structural-schema rules or lack a description."""
    bad: list[str] = []
    if isinstance(node, dict):
        for banned in ("$ref", "anyOf", "oneOf", "title", "$defs"):
            if banned in node:
                bad.append(f"{path}: {banned}")
        props = node.get("properties", {})
        for name, sub in props.items():
            if path.count(".") >= 1 and "description" not in sub:
                bad.append(f"{path}.{name}: no description")
            bad.extend(_walk(sub, f"{path}.{name}"))
        if "items" in node:
            bad.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            bad.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
        if ("properties" in node or "items" in node) and "type" not in node:
            bad.append(f"{path}: no type")
    return bad


def test_crd_schema_is_structural_and_described() -> None:
    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(root["properties"]["spec"], "spec") == []
    assert _walk(root["properties"]["status"], "status") == []


def test_status_round_trip() -> None:
    status = BridgePoolStatus(desired_replicas=3, selector="bridgepool.io/pool=a")
    wire = status.model_dump(by_alias=True, exclude_none=True)
    assert wire["desiredReplicas"] == 3
    assert BridgePoolStatus.model_validate(wire) == status

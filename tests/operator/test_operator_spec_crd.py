"""The BridgePool spec model and the CRD generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
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
    assert columns == [
        "Desired",
        "Ready",
        "Updated",
        "Utilization",
        "Phase",
        "Age",
        "Progress",
        "Revision",
    ]
    root = version["schema"]["openAPIV3Schema"]
    spec_schema = root["properties"]["spec"]
    rules = [v["message"] for v in spec_schema["x-kubernetes-validations"]]
    assert any("spec.minReplicas" in r for r in rules)
    assert spec_schema["properties"]["minReplicas"]["default"] == 1
    band = spec_schema["properties"]["autoscaling"]
    assert band["default"] == {
        "enabled": False,
        "targetUtilizationLow": 60.0,
        "targetUtilizationHigh": 80.0,
        "scaleUpStabilizationSeconds": 30.0,
        "scaleDownStabilizationSeconds": 300.0,
    }
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


# ---------------------------------------------------------------------------
# The CEL rules (x-kubernetes-validations), evaluated here with a CEL
# interpreter the way the API server evaluates them: on the CRD's defaults
# (a current API server refuses a CRD whose rule fails or reads a missing
# key on a default), and on the objects it stores.
# ---------------------------------------------------------------------------


def _spec_schema() -> dict[str, Any]:
    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema: dict[str, Any] = root["properties"]["spec"]
    return schema


def _rules_with_defaults(node: Any, path: str = "spec") -> list[tuple[str, str, Any]]:
    """(path, rule, default) for every rule on a schema node that has a default."""
    found: list[tuple[str, str, Any]] = []
    if not isinstance(node, dict):
        return found
    if "default" in node:
        rules = node.get("x-kubernetes-validations", [])
        found += [(path, v["rule"], node["default"]) for v in rules]
    for name, sub in node.get("properties", {}).items():
        found += _rules_with_defaults(sub, f"{path}.{name}")
    return found


def _with_defaults(node: dict[str, Any], value: Any) -> Any:
    """``value`` with the schema's defaults filled in, as the API server stores it."""
    if not isinstance(value, dict) or "properties" not in node:
        return value
    out = dict(value)
    for name, sub in node["properties"].items():
        if name not in out and "default" in sub:
            out[name] = sub["default"]
        if name in out:
            out[name] = _with_defaults(sub, out[name])
    return out


def _failed_rules(node: dict[str, Any], value: Any, path: str = "spec") -> list[str]:
    """Messages of the rules that refuse ``value`` anywhere under ``node``;
    a rule that cannot be evaluated (a missing key) fails the test."""
    failed: list[str] = []
    env = celpy.Environment()
    for validation in node.get("x-kubernetes-validations", []):
        program = env.program(env.compile(validation["rule"]))
        try:
            ok = program.evaluate({"self": json_to_cel(value)})
        except CELEvalError as err:
            pytest.fail(f"{path}: rule {validation['rule']!r} cannot be evaluated: {err}")
        if not ok:
            failed.append(validation["message"])
    if isinstance(value, dict):
        for name, sub in node.get("properties", {}).items():
            if name in value:
                failed += _failed_rules(sub, value[name], f"{path}.{name}")
    return failed


def test_every_default_satisfies_its_cel_rules() -> None:
    checked = _rules_with_defaults(_spec_schema())
    # autoscaling and rollout carry rules; a schema change that drops them
    # should show up here.
    assert {path for path, _, _ in checked} >= {"spec.autoscaling", "spec.rollout"}
    env = celpy.Environment()
    for path, rule, default in checked:
        program = env.program(env.compile(rule))
        try:
            ok = program.evaluate({"self": json_to_cel(default)})
        except CELEvalError as err:
            pytest.fail(f"{path}: rule {rule!r} cannot be evaluated on its default: {err}")
        assert ok, f"{path}: default {default} breaks rule {rule!r}"


def test_a_minimal_pool_passes_every_cel_rule() -> None:
    schema = _spec_schema()
    assert _failed_rules(schema, _with_defaults(schema, spec())) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"minReplicas": 5, "maxReplicas": 3}, "spec.minReplicas must be <= spec.maxReplicas"),
        ({"minReplicas": 2, "maxReplicas": 4, "replicas": 7}, "spec.replicas must be within"),
        ({"replicas": 2, "autoscaling": {"enabled": True}}, "spec.replicas cannot be set while"),
        (
            {"autoscaling": {"targetUtilizationLow": 80, "targetUtilizationHigh": 60}},
            "targetUtilizationLow must be below",
        ),
        ({"rollout": {"maxSurge": 0, "maxUnavailable": 0}}, "cannot both be 0"),
    ],
)
def test_cel_rules_refuse_what_the_models_refuse(fields: dict[str, Any], message: str) -> None:
    schema = _spec_schema()
    failed = _failed_rules(schema, _with_defaults(schema, spec(**fields)))
    assert any(message in m for m in failed), failed
    # The models refuse the same spec (clusters without CEL rely on them).
    with pytest.raises(ValidationError):
        BridgePoolSpec.model_validate(spec(**fields))

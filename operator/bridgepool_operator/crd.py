"""The BridgePool CustomResourceDefinition, generated from the pydantic models.

``python -m bridgepool_operator.crd > crds/bridgepool.io_bridgepools.yaml``
regenerates the committed file; a test fails when the two differ.

Pydantic writes JSON Schema (draft 2020-12); Kubernetes wants a structural
OpenAPI v3 schema. The conversion inlines ``$ref``s, drops ``null``
alternatives (optional fields are simply omitted), turns numeric
``exclusiveMinimum`` into the boolean form, and maps "extra fields allowed"
to ``x-kubernetes-preserve-unknown-fields``. A nested settings object
defaults to the object of its own fields' defaults (not ``{}``): the API
server checks each ``default`` against the CEL rules, which read those fields,
and refuses the CRD when a key a rule reads is missing.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from bridgepool import labels
from bridgepool.spec import BridgePoolSpec, BridgePoolStatus

# JSON Schema keywords Kubernetes does not accept or that carry no meaning there.
_DROPPED = {"title", "$defs"}


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in schema:
        options = [o for o in schema["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express union in a structural schema: {schema}")
        merged = {**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
        return _resolve(merged, defs)
    return schema


def to_structural(
    schema: dict[str, Any], defs: dict[str, Any], *, with_defaults: bool
) -> dict[str, Any]:
    """One JSON Schema node (pydantic's) as a structural OpenAPI v3 schema node."""
    node = _resolve(schema, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "default":
            if with_defaults and value is not None:
                out["default"] = value
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            bound = "minimum" if key == "exclusiveMinimum" else "maximum"
            out[bound] = value
            out[key] = True
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                if value:
                    out[key] = to_structural(value, defs, with_defaults=with_defaults)
                else:  # dict[str, Any]
                    out["x-kubernetes-preserve-unknown-fields"] = True
        elif key == "properties":
            required = set(node.get("required", ()))
            props: dict[str, Any] = {}
            for name, sub in value.items():
                converted = to_structural(sub, defs, with_defaults=with_defaults)
                if (
                    with_defaults
                    and name not in required
                    and "properties" in converted
                    and "default" not in converted
                    and not converted.get("required")
                ):
                    converted["default"] = _defaults_of(converted)
                props[name] = converted
            out[key] = props
        elif key == "items":
            out[key] = to_structural(value, defs, with_defaults=with_defaults)
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    if "properties" in out or out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("type", "object")
    return out


def _defaults_of(node: dict[str, Any]) -> dict[str, Any]:
    """The object an object schema's own defaults make (its nested objects'
    defaults are already filled in, children being converted first)."""
    props = node.get("properties", {})
    # Copies, so the YAML has no anchors where a default repeats inside another.
    return {name: copy.deepcopy(sub["default"]) for name, sub in props.items() if "default" in sub}


def model_schema(model: type[BridgePoolSpec] | type[BridgePoolStatus], *, defaults: bool) -> Any:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return to_structural(raw, raw.get("$defs", {}), with_defaults=defaults)


def build_crd() -> dict[str, Any]:
    """The CRD as a plain dict."""
    spec_schema = model_schema(BridgePoolSpec, defaults=True)
    status_schema = model_schema(BridgePoolStatus, defaults=False)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{labels.PLURAL}.{labels.GROUP}"},
        "spec": {
            "group": labels.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": labels.KIND,
                "plural": labels.PLURAL,
                "singular": labels.SINGULAR,
                "shortNames": [labels.SHORT_NAME],
                "listKind": f"{labels.KIND}List",
            },
            "versions": [
                {
                    "name": labels.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": [
                        _column("Desired", "integer", ".status.desiredReplicas"),
                        _column("Ready", "integer", ".status.readyReplicas"),
                        _column("Updated", "integer", ".status.updatedReplicas"),
                        _column("Utilization", "number", ".status.utilization"),
                        _column("Phase", "string", ".status.phase"),
                        _column("Age", "date", ".metadata.creationTimestamp"),
                        # What the pool is doing: rolling out, scaling, which
                        # workers drain and until when.
                        _column("Progress", "string", PROGRESS_PATH),
                        _column("Revision", "string", ".status.updateRevision", priority=1),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A pool of stateful Python bridge workers.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


PROGRESS_PATH = '.status.conditions[?(@.type=="Progressing")].message'


def _column(name: str, kind: str, path: str, priority: int = 0) -> dict[str, Any]:
    """A ``kubectl get`` column; priority 1 shows only with ``-o wide``."""
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        column["priority"] = priority
    return column


def render_crd() -> str:
    """The CRD as the YAML committed in ``crds/``."""
    header = "# Generated by `python -m bridgepool_operator.crd`; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def main() -> None:
    sys.stdout.write(render_crd())


if __name__ == "__main__":
    main()

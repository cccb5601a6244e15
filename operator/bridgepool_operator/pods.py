"""Worker pods built from a pool's spec, and the objects kept beside them (the
pool's PodDisruptionBudget, the Secret of its keys, its NetworkPolicy), as
plain dicts; the revision hash; and the API server's refusal of a worker pod,
told in the pool's own fields.

Pure: no API calls. The revision covers everything that lands in the pod
(template, worker environment, probes, grace period, the keys' mount), so any
change that would produce a different pod starts a rolling replacement.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bridgepool import labels
from bridgepool.credentials import KEY_FILE, PREVIOUS_FILE, SCRAPE_FILE, Keys
from bridgepool.protocol import WORKER_PORT, WORKER_PORT_NAME
from bridgepool.spec import BridgePoolSpec
from bridgepool.worker_settings import worker_settings

REVISION_LENGTH = 10


@dataclass(frozen=True)
class PoolRef:
    """Identity of the BridgePool that owns the pods."""

    name: str
    namespace: str
    uid: str


def worker_env(spec: BridgePoolSpec) -> list[dict[str, str]]:
    """The BRIDGEPOOL_WORKER_* variables carrying the pool's worker settings;
    the pool's Secret of keys is mounted at ``labels.WORKER_KEYS_DIR``
    (build_worker_pod)."""
    values = worker_settings(spec, labels.WORKER_KEYS_DIR)
    return [{"name": k, "value": v} for k, v in values.items()]


def _probes(spec: BridgePoolSpec) -> dict[str, dict[str, Any]]:
    health = spec.health
    return {
        # A failed readiness check takes the worker out of routing (degraded).
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": WORKER_PORT_NAME},
            "periodSeconds": health.readiness_interval_seconds,
            "timeoutSeconds": min(5, health.readiness_interval_seconds),
            "failureThreshold": health.degrade_after_failures,
            "successThreshold": 1,
        },
        # A worker that stops answering /healthz is restarted by the kubelet;
        # repeated restarts make the operator replace the pod.
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": WORKER_PORT_NAME},
            "initialDelaySeconds": health.interval_seconds,
            "periodSeconds": health.interval_seconds,
            "timeoutSeconds": min(5, health.interval_seconds),
            "failureThreshold": health.replace_after_failures,
        },
    }


def _pod_spec(spec: BridgePoolSpec) -> dict[str, Any]:
    """The pod spec (without metadata) that the revision is computed over."""
    pod_spec: dict[str, Any] = copy.deepcopy(
        spec.template.spec.model_dump(by_alias=True, exclude_none=True)
    )
    pod_spec["terminationGracePeriodSeconds"] = spec.rollout.termination_grace_period_seconds
    # Service links put <SERVICE>_PORT=tcp://... variables into the pod; a
    # Service named e.g. "bridgepool-worker" would clash with the worker's own
    # BRIDGEPOOL_WORKER_* settings. A template may still turn them on.
    pod_spec.setdefault("enableServiceLinks", False)
    worker = pod_spec["containers"][0]
    ours = worker_env(spec)
    ours_names = {e["name"] for e in ours}
    worker["env"] = [e for e in worker.get("env", []) if e.get("name") not in ours_names] + ours
    # The pool's keys, read-only; they take the place of a template's mount of the
    # same name or path.
    worker["volumeMounts"] = [
        m
        for m in worker.get("volumeMounts", [])
        if m.get("name") != labels.WORKER_KEYS_VOLUME
        and m.get("mountPath") != labels.WORKER_KEYS_DIR
    ] + [{"name": labels.WORKER_KEYS_VOLUME, "mountPath": labels.WORKER_KEYS_DIR, "readOnly": True}]
    ports = worker.setdefault("ports", [])
    if not any(p.get("name") == WORKER_PORT_NAME for p in ports):
        ports.append({"name": WORKER_PORT_NAME, "containerPort": WORKER_PORT, "protocol": "TCP"})
    for probe, body in _probes(spec).items():
        worker.setdefault(probe, body)  # a template's own probe wins
    return pod_spec


def revision_of(spec: BridgePoolSpec) -> str:
    """Stable hash of everything the pool puts into a worker pod."""
    material = {
        "metadata": spec.template.metadata.model_dump(by_alias=True, exclude_none=True),
        "spec": _pod_spec(spec),
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()
    return digest[:REVISION_LENGTH]


def pool_labels(pool: str) -> dict[str, str]:
    """The labels of everything the operator makes for a pool; they select its
    worker pods too."""
    return {labels.LABEL_POOL: pool, labels.LABEL_MANAGED_BY: labels.MANAGED_BY}


def worker_labels(pool: str, revision: str) -> dict[str, str]:
    return {
        **pool_labels(pool),
        labels.LABEL_REVISION: revision,
        labels.LABEL_COMPONENT: labels.COMPONENT_WORKER,
    }


def owned_metadata(pool: PoolRef, name: str) -> dict[str, Any]:
    """The metadata of an object kept beside a pool: labelled as the pool's, and
    owned by it, so it goes when the pool goes."""
    return {
        "name": name,
        "namespace": pool.namespace,
        "labels": pool_labels(pool.name),
        "ownerReferences": [_owner(pool)],
    }


def build_worker_pod(pool: PoolRef, spec: BridgePoolSpec, revision: str) -> dict[str, Any]:
    """A worker pod for ``pool`` at ``revision``; the API server picks its name."""
    meta = spec.template.metadata.model_dump(by_alias=True, exclude_none=True)
    extra_meta = {
        k: v for k, v in meta.items() if k not in ("labels", "annotations", "name", "namespace")
    }
    pod_spec = _pod_spec(spec)
    # The Secret's name follows from the pool's, so the revision need not cover it.
    keys = {
        "name": labels.WORKER_KEYS_VOLUME,
        "secret": {"secretName": labels.keys_secret_name(pool.name)},
    }
    pod_spec["volumes"] = [
        v for v in pod_spec.get("volumes", []) if v.get("name") != labels.WORKER_KEYS_VOLUME
    ] + [keys]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            **extra_meta,
            "generateName": f"{pool.name}-",
            "namespace": pool.namespace,
            "labels": {**meta.get("labels", {}), **worker_labels(pool.name, revision)},
            "annotations": dict(meta.get("annotations", {})),
            "ownerReferences": [_owner(pool)],
        },
        "spec": pod_spec,
    }


def budget_min_available(spec: BridgePoolSpec, desired: int) -> int:
    """Ready workers evictions must leave: the desired size less what
    ``spec.disruptions.maxUnavailable`` allows."""
    return max(0, desired - spec.disruptions.max_unavailable)


def build_budget(pool: PoolRef, min_available: int) -> dict[str, Any]:
    """The pool's PodDisruptionBudget: evictions (a node drain) take its
    workers only while ``min_available`` ready ones remain.

    An integer minAvailable, kept equal to the desired size less the allowed
    disruptions, needs no scale lookup by the disruption controller (a
    maxUnavailable would: it reads the owner's spec.replicas, which an
    autoscaled pool leaves unset). A worker that is not ready may always be
    evicted: it serves nothing, and a crash-looping one must not block a
    node drain."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": owned_metadata(pool, pool.name),
        "spec": {
            "minAvailable": min_available,
            "selector": {"matchLabels": {labels.LABEL_POOL: pool.name}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def build_keys_secret(pool: PoolRef, keys: Keys) -> dict[str, Any]:
    """The Secret the pool's workers mount as their key directory
    (:mod:`bridgepool.credentials`): the pool's key, the one before it while a
    rotation is under way, and the release's scrape token. Never the release
    key itself."""
    files = {KEY_FILE: keys.current, PREVIOUS_FILE: keys.previous, SCRAPE_FILE: keys.scrape}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": owned_metadata(pool, labels.keys_secret_name(pool.name)),
        "type": "Opaque",
        "data": {
            name: base64.b64encode(value.encode()).decode()
            for name, value in files.items()
            if value is not None
        },
    }


# The label Kubernetes puts on every namespace, holding its name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class PolicyPeers:
    """Who, besides a pool's own workers, may reach the pool's workers: the
    release's router and operator pods (by their labels, in the release's
    namespace), and where metrics are scraped from."""

    release_namespace: str
    router: Mapping[str, str]
    operator: Mapping[str, str]
    # Kubernetes NetworkPolicyPeer objects, as they are.
    scrape_from: tuple[Mapping[str, Any], ...] = ()


def build_network_policy(pool: PoolRef, peers: PolicyPeers) -> dict[str, Any]:
    """The pool's NetworkPolicy: its workers take traffic, on any port, only
    from ``peers`` and from each other (a worker that hands a session over
    tells the new holder to take it)."""
    workers = {"matchLabels": pool_labels(pool.name)}
    release = {"matchLabels": {NAMESPACE_NAME_LABEL: peers.release_namespace}}
    sources = [
        {"namespaceSelector": release, "podSelector": {"matchLabels": dict(peers.router)}},
        {"namespaceSelector": release, "podSelector": {"matchLabels": dict(peers.operator)}},
        {"podSelector": workers},
        *(copy.deepcopy(dict(peer)) for peer in peers.scrape_from),
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": owned_metadata(pool, labels.network_policy_name(pool.name)),
        "spec": {
            "podSelector": workers,
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources}],
        },
    }


def _owner(pool: PoolRef) -> dict[str, Any]:
    return {
        "apiVersion": labels.API_VERSION,
        "kind": labels.KIND,
        "name": pool.name,
        "uid": pool.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# A pod field as the API server names it, in a cause or in a strict-decoding
# error: `unknown field "spec.containers[0].resoures"`.
_POD_FIELD = re.compile(r'(field )"((?:spec|metadata)(?:[.\[][^"]*)?)"')
# What the API server puts before its reasons: `Pod "web-x7k2p" is invalid: `,
# `Pod in version "v1" cannot be handled as a Pod: `.
_REFUSAL_PREFIX = re.compile(
    r'^Pod (?:"[^"]*" is invalid|in version "[^"]*" cannot be handled as a Pod): '
)


def template_path(pod_field: str) -> str:
    """The field of the pool's spec a worker pod's field comes from:
    ``spec.containers[0].name`` -> ``spec.template.spec.containers[0].name``."""
    return f"spec.template.{pod_field}"


def refusal_message(status: Mapping[str, Any]) -> str:
    """The API server's reasons for refusing a worker pod (its Status body),
    naming the pool's fields and not the refused pod (whose generated name
    changes on every try): ``spec.template.spec.containers[0].name: Invalid
    value: "Worker_1": ...``."""
    causes = [c for c in (status.get("details") or {}).get("causes") or [] if c.get("field")]
    if causes:
        return "; ".join(f"{template_path(c['field'])}: {c.get('message', '')}" for c in causes)
    message = _REFUSAL_PREFIX.sub("", str(status.get("message") or "refused"))
    return _POD_FIELD.sub(lambda m: f'{m[1]}"{template_path(m[2])}"', message)

"""The operator's start-up settings: flags over ``BRIDGEPOOL_OPERATOR_*``
variables over defaults, read the way every BridgePool component reads them
(``bridgepool.config``)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from bridgepool.config import ConfigError, ConfigSources, Items, LogLevel
from bridgepool.credentials import KeyDir, PoolKeys

ENV_PREFIX = "BRIDGEPOOL_OPERATOR_"

# A label name (and a label value, which may also be empty), and a label key: a
# name behind an optional DNS-subdomain prefix.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")
# What a NetworkPolicyPeer may hold; an ipBlock stands alone.
_PEER_FIELDS = frozenset({"podSelector", "namespaceSelector", "ipBlock"})


def _parse_labels(value: Any) -> Any:
    """``k=v,k=v`` as a mapping; anything else is left to the model."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        key, sep, label = item.partition("=")
        if not sep:
            raise ValueError(f"{item!r} is not key=value")
        pairs[key.strip()] = label.strip()
    return pairs


def _check_labels(pairs: dict[str, str]) -> dict[str, str]:
    for key, value in pairs.items():
        if not _LABEL_KEY.fullmatch(key):
            raise ValueError(f"{key!r} is not a label key")
        if not _LABEL_VALUE.fullmatch(value):
            raise ValueError(f"{value!r} (of {key}) is not a label value")
    return pairs


def _parse_json(value: Any) -> Any:
    """JSON text as what it holds (empty text: an empty list)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return []
    try:
        return json.loads(value)
    except ValueError as err:
        raise ValueError(f"not JSON: {err}") from None


def _check_peers(peers: tuple[dict[str, Any], ...]) -> tuple[dict[str, Any], ...]:
    for n, peer in enumerate(peers):
        unknown = set(peer) - _PEER_FIELDS
        if not peer or unknown:
            raise ValueError(
                f"item {n} is not a NetworkPolicyPeer: it holds podSelector, namespaceSelector "
                f"or ipBlock{f', not {sorted(unknown)}' if unknown else ''}"
            )
        if "ipBlock" in peer and len(peer) > 1:
            raise ValueError(f"item {n}: an ipBlock peer holds no selector")
        if not all(isinstance(v, dict) for v in peer.values()):
            raise ValueError(f"item {n}: each field of a peer is an object")
    return peers


# ``k=v,k=v`` in a flag or variable: the labels that select some pods.
LabelSelector = Annotated[
    dict[str, str], BeforeValidator(_parse_labels), AfterValidator(_check_labels)
]
# A JSON list of Kubernetes NetworkPolicyPeer objects.
PolicyPeers = Annotated[
    tuple[dict[str, Any], ...], BeforeValidator(_parse_json), AfterValidator(_check_peers)
]


class OperatorConfig(BaseModel):
    """How the operator process runs: its flags, or ``BRIDGEPOOL_OPERATOR_*`` variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    namespace: Annotated[tuple[str, ...], Items(separator=",")] = Field(
        default=(),
        description="namespace to serve (globs allowed); repeatable, and comma-separated "
        "in the variable",
    )
    all_namespaces: bool = Field(default=False, description="serve every namespace")
    metrics_port: int = Field(
        default=9090, ge=0, le=65535, description="Prometheus /metrics port, 0 for none"
    )
    liveness_port: int = Field(
        default=8081, ge=0, le=65535, description="kopf's liveness endpoint /healthz, 0 for none"
    )
    bind: str = Field(default="0.0.0.0", description="address the two ports listen on")
    log_level: LogLevel = Field(
        default="info", description="least severe level logged: debug, info, warning or error"
    )
    interval_seconds: float = Field(
        default=5.0, gt=0, description="seconds between passes over a pool with nothing to do"
    )
    stats_timeout_seconds: float = Field(
        default=1.0, gt=0, description="how long a worker's /v1/stats may take to answer"
    )
    move_budget_seconds: float = Field(
        default=15.0,
        gt=0,
        description="how long one pass may spend moving a draining worker's sessions "
        "(the rest move in the next pass)",
    )
    move_step_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="how long one step of a session move (export, import, commit) may take",
    )
    settle_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="how long a pass waits for kopf's views to show its own changes before "
        "the next pass plans (so no pod is created twice)",
    )
    worker_keys_dir: Path | None = Field(
        default=None,
        description="required: the release key directory (files key, previous, "
        "scrape-token); each pool's key comes from it, goes into a Secret the pool's workers "
        "mount, and is sent on every call to them",
    )
    network_policy: bool = Field(
        default=True,
        description="keep a NetworkPolicy per pool that lets only the release's router and "
        "operator, the pool's own workers and --network-policy-scrape-from reach its workers; "
        "a pool turns it off for itself with spec.networkPolicy.enabled: false",
    )
    release_namespace: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="namespace of the release's router and operator pods, which the network "
        "policy admits (the chart gives the operator's own)",
    )
    router_selector: LabelSelector = Field(
        default_factory=dict,
        description="labels of the release's router pods, as k=v,k=v (the network policy "
        "admits them)",
    )
    operator_selector: LabelSelector = Field(
        default_factory=dict,
        description="labels of the release's operator pods, as k=v,k=v (the network policy "
        "admits them)",
    )
    network_policy_scrape_from: PolicyPeers = Field(
        default=(),
        description="what else the network policy admits, where metrics are scraped from: a "
        "JSON list of NetworkPolicyPeer objects, e.g. "
        '[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]',
    )


SOURCES = ConfigSources(
    OperatorConfig,
    prog="bridgepool-operator",
    description="Reconcile BridgePools into worker pods.",
    env_prefix=ENV_PREFIX,
    flags={
        "namespace": {"action": "append"},
        "all_namespaces": {"action": "store_true"},
        "metrics_port": {"metavar": "PORT"},
        "liveness_port": {"metavar": "PORT"},
        "bind": {"metavar": "ADDRESS"},
        "log_level": {"metavar": "LEVEL"},
        "worker_keys_dir": {"metavar": "DIR"},
        "network_policy": {"action": argparse.BooleanOptionalAction},
        "release_namespace": {"metavar": "NS"},
        "router_selector": {"metavar": "K=V,..."},
        "operator_selector": {"metavar": "K=V,..."},
        "network_policy_scrape_from": {"metavar": "JSON"},
    },
)


_NO_KEYS = (
    f"give {SOURCES.flag('worker_keys_dir')} DIR ({SOURCES.variable('worker_keys_dir')}), "
    "the release key directory: the chart mounts one; `bridgepool-keys new DIR` makes one "
    "off a cluster"
)


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> OperatorConfig:
    """Flags over ``BRIDGEPOOL_OPERATOR_*`` variables over defaults; raises
    :class:`~bridgepool.config.ConfigError` naming a bad flag or variable,
    or saying which required one is missing."""
    config = SOURCES.load(argv, environ)
    if bool(config.namespace) == config.all_namespaces:
        raise ConfigError("give --namespace NS (repeatable) or --all-namespaces, not both")
    if config.worker_keys_dir is None:
        raise ConfigError(_NO_KEYS)
    if config.network_policy:
        missing = [
            f"{SOURCES.flag(name)} ({SOURCES.variable(name)})"
            for name in ("release_namespace", "router_selector", "operator_selector")
            if not getattr(config, name)
        ]
        if missing:
            raise ConfigError(
                "the per-pool network policy (on unless --no-network-policy) needs "
                + ", ".join(missing)
                + ": who besides the pool's workers may reach them (the chart sets these)"
            )
    return config


def release_keys(config: OperatorConfig) -> PoolKeys:
    """Every pool's keys, from the release key directory; raises
    :class:`~bridgepool.config.ConfigError` when it is missing or unreadable."""
    if config.worker_keys_dir is None:
        raise ConfigError(_NO_KEYS)
    return PoolKeys(KeyDir(config.worker_keys_dir))

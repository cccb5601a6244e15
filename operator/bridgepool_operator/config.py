"""The operator's start-up settings: flags over ``BRIDGEPOOL_OPERATOR_*``
variables over defaults, read the way every BridgePool component reads them
(``bridgepool.config``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from bridgepool.config import ConfigError, ConfigSources, Items, LogLevel

ENV_PREFIX = "BRIDGEPOOL_OPERATOR_"


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
    },
)


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> OperatorConfig:
    """Flags over ``BRIDGEPOOL_OPERATOR_*`` variables over defaults; raises
    :class:`~bridgepool.config.ConfigError` naming a bad flag or variable,
    or saying which namespaces to serve is missing."""
    config = SOURCES.load(argv, environ)
    if bool(config.namespace) == config.all_namespaces:
        raise ConfigError("give --namespace NS (repeatable) or --all-namespaces, not both")
    return config

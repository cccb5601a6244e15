"""Worker settings: command-line flags over ``BRIDGEPOOL_WORKER_*`` environment
variables over defaults, validated by one pydantic model.

A bad value is reported naming the flag or variable it came from, so a pod
that cannot start says why in its first log line.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bridgepool.config import ConfigError, ConfigSources, Items, LogLevel
from bridgepool.protocol import DEFAULT_MAX_BODY_BYTES, WORKER_PORT

ENV_PREFIX = "BRIDGEPOOL_WORKER_"
FAULTS_ENV = "BRIDGEPOOL_FAULTS_ENABLED"


class WorkerConfig(BaseModel):
    """Everything a worker process needs to know at start. The variables the
    operator sets on worker pods are these fields' ``BRIDGEPOOL_WORKER_*`` names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=WORKER_PORT, ge=0, le=65535, description="port to listen on")
    handlers: Annotated[tuple[str, ...], Items(",")] = Field(
        default=(),
        description="handler modules: dotted module paths or .py files; comma-separated in "
        "the variable",
    )
    name: str = Field(
        default_factory=socket.gethostname,
        min_length=1,
        description="worker name, sent as X-BridgePool-Worker; default: the hostname",
    )
    capacity: int = Field(default=1, ge=1, description="concurrent calls")
    session_ttl_seconds: float = Field(
        default=300.0, gt=0, description="sliding idle TTL of a session"
    )
    max_sessions: int = Field(default=1000, ge=1, description="most sessions held at once")
    grace_seconds: float = Field(default=25.0, ge=0, description="drain time after SIGTERM")
    exit_linger_seconds: float = Field(
        default=0.0,
        ge=0,
        description="after SIGTERM, once drained, keep answering this long (each answer "
        "closing its connection) before exiting, within the grace period: a router's health "
        "check interval, so routers drop their connections first (the operator sets it)",
    )
    handoff_sessions: bool = Field(
        default=False,
        description="after SIGTERM, keep serving until its sessions have moved to other "
        "workers (the operator moves them) or the grace period ends",
    )
    max_requests: int | None = Field(
        default=None, ge=1, description="recycle after this many calls"
    )
    max_age_seconds: float | None = Field(
        default=None, gt=0, description="recycle after this many seconds"
    )
    max_rss_bytes: int | None = Field(
        default=None, ge=1, description="recycle above this resident memory"
    )
    call_timeout_seconds: float = Field(
        default=60.0, gt=0, description="time budget of a call; X-BridgePool-Timeout may lower it"
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BODY_BYTES, ge=1, description="largest request body"
    )
    sweep_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="how often expired sessions are swept and timed states re-checked",
    )
    max_session_state_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=1,
        description="largest session state a move exports or imports (its envelope's "
        "canonical JSON)",
    )
    move_freeze_seconds: float = Field(
        default=30.0,
        gt=0,
        description="how long an exported session stays frozen waiting for its commit; "
        "then it thaws",
    )
    move_pending_seconds: float = Field(
        default=60.0,
        gt=0,
        description="how long an imported session waits for its source's commit; then the "
        "copy is dropped (keep it above the sources' freeze time)",
    )
    move_wait_seconds: float = Field(
        default=5.0,
        gt=0,
        description="how long a call waits for a moving session (then 503 session_moving), "
        "an export for the session's calls in flight, a commit for the target's answer",
    )
    keys_dir: Path | None = Field(
        default=None,
        description="directory of the pool's keys (files key, previous, scrape-token; on a "
        "cluster, the pool's Secret): past /healthz and /readyz, only a caller that sends one "
        "as 'Authorization: Bearer KEY' is answered",
    )
    open_access: bool = Field(
        default=False,
        description="answer every caller without a key, in place of a keys dir: only where "
        "nothing else can reach the worker (logged at start)",
    )
    program_backend: Literal["offline", "dspy"] = Field(
        default="offline", description="default backend of programs: offline or dspy"
    )
    dspy_model: str | None = Field(default=None, description="model name for real DSPy")
    faults_enabled: bool = Field(default=False, description="add the fault command (tests only)")
    log_level: LogLevel = Field(
        default="info",
        description="least severe level logged; debug adds the ready <-> busy flips of "
        "every call at capacity",
    )


SOURCES = ConfigSources(
    WorkerConfig,
    prog="bridgepool-worker",
    description="BridgePool bridge worker: executes commands over HTTP, keeps sessions.",
    env_prefix=ENV_PREFIX,
    flags={
        "host": {},
        "port": {},
        "handlers": {"nargs": "+", "metavar": "MODULE"},
        "name": {},
        "capacity": {},
        "keys_dir": {"metavar": "DIR"},
        "open_access": {"action": "store_true"},
    },
    env_names={"faults_enabled": FAULTS_ENV},
)


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> WorkerConfig:
    """Flags over ``BRIDGEPOOL_WORKER_*`` variables over defaults; raises
    :class:`~bridgepool.config.ConfigError` naming a bad flag or variable."""
    config = SOURCES.load(argv, environ)
    if config.open_access and config.keys_dir is not None:
        raise ConfigError(
            "give --keys-dir (BRIDGEPOOL_WORKER_KEYS_DIR) or --open-access "
            "(BRIDGEPOOL_WORKER_OPEN_ACCESS), not both"
        )
    return config

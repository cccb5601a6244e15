"""Worker settings: command-line flags over ``BRIDGEPOOL_WORKER_*`` environment
variables over defaults, validated by one pydantic model.

A bad value is reported naming the flag or variable it came from, so a pod
that cannot start says why in its first log line.
"""

from __future__ import annotations

import argparse
import socket
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridgepool.protocol import DEFAULT_MAX_BODY_BYTES, WORKER_PORT

ENV_PREFIX = "BRIDGEPOOL_WORKER_"
FAULTS_ENV = "BRIDGEPOOL_FAULTS_ENABLED"


class WorkerConfig(BaseModel):
    """Everything a worker process needs to know at start."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=WORKER_PORT, ge=0, le=65535)
    handlers: tuple[str, ...] = ()
    name: str = Field(default_factory=socket.gethostname, min_length=1)
    capacity: int = Field(default=1, ge=1)
    session_ttl_seconds: float = Field(default=300.0, gt=0)
    max_sessions: int = Field(default=1000, ge=1)
    grace_seconds: float = Field(default=25.0, ge=0)
    max_requests: int | None = Field(default=None, ge=1)
    max_age_seconds: float | None = Field(default=None, gt=0)
    max_rss_bytes: int | None = Field(default=None, ge=1)
    call_timeout_seconds: float = Field(default=60.0, gt=0)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1)
    # How often expired sessions are swept and timed states re-checked.
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    # Programs run offline (deterministic) unless asked for "dspy".
    program_backend: Literal["offline", "dspy"] = "offline"
    dspy_model: str | None = None
    faults_enabled: bool = False
    # debug also logs the ready <-> busy flips that happen on every call at capacity.
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class ConfigError(Exception):
    """A setting could not be used; the message names where it came from."""


# field name -> (flag, environment variable); the variables the operator sets
# on worker pods use exactly these names.
_SOURCES: dict[str, tuple[str | None, str]] = {
    "host": ("--host", ENV_PREFIX + "HOST"),
    "port": ("--port", ENV_PREFIX + "PORT"),
    "handlers": ("--handlers", ENV_PREFIX + "HANDLERS"),
    "name": ("--name", ENV_PREFIX + "NAME"),
    "capacity": ("--capacity", ENV_PREFIX + "CAPACITY"),
    "session_ttl_seconds": (None, ENV_PREFIX + "SESSION_TTL_SECONDS"),
    "max_sessions": (None, ENV_PREFIX + "MAX_SESSIONS"),
    "grace_seconds": (None, ENV_PREFIX + "GRACE_SECONDS"),
    "max_requests": (None, ENV_PREFIX + "MAX_REQUESTS"),
    "max_age_seconds": (None, ENV_PREFIX + "MAX_AGE_SECONDS"),
    "max_rss_bytes": (None, ENV_PREFIX + "MAX_RSS_BYTES"),
    "call_timeout_seconds": (None, ENV_PREFIX + "CALL_TIMEOUT_SECONDS"),
    "max_body_bytes": (None, ENV_PREFIX + "MAX_BODY_BYTES"),
    "sweep_interval_seconds": (None, ENV_PREFIX + "SWEEP_INTERVAL_SECONDS"),
    "program_backend": (None, ENV_PREFIX + "PROGRAM_BACKEND"),
    "dspy_model": (None, ENV_PREFIX + "DSPY_MODEL"),
    "faults_enabled": (None, FAULTS_ENV),
    "log_level": (None, ENV_PREFIX + "LOG_LEVEL"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridgepool-worker",
        description="BridgePool bridge worker: executes commands over HTTP, keeps sessions.",
        epilog="Every setting can also come from a BRIDGEPOOL_WORKER_* environment variable; "
        "flags win.",
    )
    parser.add_argument("--host", help="address to listen on (BRIDGEPOOL_WORKER_HOST)")
    parser.add_argument("--port", help="port to listen on (BRIDGEPOOL_WORKER_PORT, 8080)")
    parser.add_argument(
        "--handlers",
        nargs="+",
        metavar="MODULE",
        help="handler modules: dotted module paths or .py files (BRIDGEPOOL_WORKER_HANDLERS, "
        "comma-separated)",
    )
    parser.add_argument("--name", help="worker name (BRIDGEPOOL_WORKER_NAME, the hostname)")
    parser.add_argument("--capacity", help="concurrent calls (BRIDGEPOOL_WORKER_CAPACITY, 1)")
    return parser


def _env_value(field: str, raw: str) -> Any:
    if field == "handlers":
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if field == "faults_enabled":
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    if field == "log_level":
        return raw.strip().lower()
    if raw.strip() == "" and WorkerConfig.model_fields[field].default is None:
        return None
    return raw.strip()


def load_config(argv: Sequence[str], environ: Mapping[str, str]) -> WorkerConfig:
    """Build the config from flags and environment; raise :class:`ConfigError`."""
    parser = _parser()
    try:
        flags = vars(parser.parse_args(list(argv)))
    except SystemExit as exc:  # argparse already printed its usage message
        raise ConfigError("invalid command line (see usage above)") from exc
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field, (flag, env) in _SOURCES.items():
        raw_flag = flags.get(flag[2:]) if flag is not None else None
        if flag is not None and raw_flag is not None:
            values[field] = tuple(raw_flag) if field == "handlers" else raw_flag
            origin[field] = flag
        elif env in environ:
            values[field] = _env_value(field, environ[env])
            origin[field] = env
    try:
        return WorkerConfig.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            where = origin.get(field, field)
            problems.append(f"{where}={values.get(field)!r}: {err['msg']}")
        raise ConfigError("bad setting: " + "; ".join(problems)) from None

"""``bridgepool-router``: run the router with a static or Kubernetes backend."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from bridgepool import logs
from bridgepool.config import ConfigError, ConfigSources, Items, LogLevel
from bridgepool.credentials import KeyDir, PoolKeys
from bridgepool_router.app import RouterConfig, create_app
from bridgepool_router.auth import AuthSettings
from bridgepool_router.discovery import Discovery
from bridgepool_router.discovery.static import StaticConfigError, StaticDiscovery

log = logging.getLogger("bridgepool_router")

ENV_PREFIX = "BRIDGEPOOL_ROUTER_"

# Connections left waiting to be accepted while the router is held up (a busy
# core, a long pause). Past this queue the kernel drops a client's SYN, and the
# client tries again only a second later: with aiohttp's default of 128, a
# 300 ms stall at 1,000 calls/s left over a hundred calls waiting over 1 s. The
# kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 2048
HEAD_LIMIT_BYTES = 64 * 1024


class RouterOptions(BaseModel):
    """How the router process runs: its flags, or ``BRIDGEPOOL_ROUTER_*`` variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = Field(default="0.0.0.0", description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on")
    static: Annotated[tuple[str, ...], Items(separator=None)] = Field(
        default=(),
        description="route [NAMESPACE/]POOL (a bare POOL is in namespace default) to these "
        "worker base URLs; repeatable, and space-separated in the variable",
    )
    static_file: Path | None = Field(
        default=None, description="YAML/JSON file of pools, re-read when it changes; see README"
    )
    static_reload_seconds: float = Field(
        default=1.0, gt=0, description="how often the static file is checked for changes"
    )
    kubernetes: bool = Field(
        default=False, description="discover pools and their workers in Kubernetes"
    )
    namespace: Annotated[tuple[str, ...], Items(separator=",")] = Field(
        default=(),
        description="namespace to watch, none for all; repeatable, and comma-separated in "
        "the variable",
    )
    worker_keys_dir: Path | None = Field(
        default=None,
        description="the release key directory (files key, previous): each pool's key, which "
        "its workers ask of every caller, is derived from it; none: only workers started "
        "with --open-access answer",
    )
    auth: Literal["none", "kubernetes"] = Field(
        default="none",
        description="who may call: kubernetes (a bearer token checked by TokenReview, each "
        "call authorized by SubjectAccessReview on its BridgePool) or none (anyone who can "
        "reach the router)",
    )
    auth_audience: Annotated[tuple[str, ...], Items(separator=",")] = Field(
        default=(),
        description="audience a token must be for; repeatable, comma-separated in the "
        "variable; none: the API server's own (a pod's ServiceAccount token as it is)",
    )
    auth_token_cache_seconds: float = Field(
        default=120.0, ge=0, description="how long a token's review is kept (never past its expiry)"
    )
    authz_allow_cache_seconds: float = Field(
        default=300.0, ge=0, description="how long an allowing access review is kept"
    )
    authz_deny_cache_seconds: float = Field(
        default=30.0, ge=0, description="how long a denying access review is kept"
    )
    reuse_port: bool = Field(
        default=False,
        description="share the port with other router processes (SO_REUSEPORT): each has its "
        "own session table, queue and metrics",
    )
    shutdown_timeout: float = Field(
        default=30.0, ge=0, description="seconds calls in flight get to finish after SIGTERM"
    )
    log_level: LogLevel = Field(
        default="info", description="least severe level logged: debug, info, warning or error"
    )


SOURCES = ConfigSources(
    RouterOptions,
    prog="bridgepool-router",
    description="Session-sticky router for BridgePool workers.",
    env_prefix=ENV_PREFIX,
    flags={
        "host": {},
        "port": {},
        "static": {"action": "append", "metavar": "[NAMESPACE/]POOL=URL[,URL...]"},
        "static_file": {"metavar": "PATH"},
        "static_reload_seconds": {"metavar": "SECONDS"},
        "kubernetes": {"action": "store_true"},
        "namespace": {"action": "append"},
        "worker_keys_dir": {"metavar": "DIR"},
        "auth": {"metavar": "MODE"},
        "auth_audience": {"action": "append", "metavar": "AUDIENCE"},
        "auth_token_cache_seconds": {"metavar": "SECONDS"},
        "authz_allow_cache_seconds": {"metavar": "SECONDS"},
        "authz_deny_cache_seconds": {"metavar": "SECONDS"},
        "reuse_port": {"action": "store_true"},
        "shutdown_timeout": {"metavar": "SECONDS"},
        "log_level": {"metavar": "LEVEL"},
    },
)


def load_options(argv: Sequence[str], environ: Mapping[str, str]) -> RouterOptions:
    """Flags over ``BRIDGEPOOL_ROUTER_*`` variables over defaults; raises
    :class:`~bridgepool.config.ConfigError` naming a bad flag or variable."""
    return SOURCES.load(argv, environ)


def build_discovery(options: RouterOptions) -> Discovery:
    if options.kubernetes:
        if options.static or options.static_file:
            raise StaticConfigError("--kubernetes cannot be combined with --static/--static-file")
        from bridgepool_router.discovery.kubernetes import KubernetesDiscovery

        return KubernetesDiscovery(namespaces=options.namespace)
    if not options.static and not options.static_file:
        raise StaticConfigError(
            "give --static [NAMESPACE/]POOL=URL[,URL...], --static-file or --kubernetes"
        )
    return StaticDiscovery(
        options.static, options.static_file, reload_seconds=options.static_reload_seconds
    )


def _event_loop() -> asyncio.AbstractEventLoop:
    # uvloop roughly halves the per-call cost of the proxy path; asyncio's loop
    # works too, only slower.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> None:
    try:
        options = load_options(sys.argv[1:] if argv is None else argv, os.environ)
        discovery = build_discovery(options)
        worker_keys = None if options.worker_keys_dir is None else KeyDir(options.worker_keys_dir)
    except (ConfigError, StaticConfigError, OSError) as exc:
        print(f"bridgepool-router: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure("router", options.log_level)
    if worker_keys is None:
        log.warning(
            "no worker keys (--worker-keys-dir): only workers started with --open-access "
            "will answer this router"
        )
    auth = AuthSettings(
        mode=options.auth,
        audiences=options.auth_audience,
        token_cache_seconds=options.auth_token_cache_seconds,
        allow_cache_seconds=options.authz_allow_cache_seconds,
        deny_cache_seconds=options.authz_deny_cache_seconds,
    )
    app = create_app(
        RouterConfig(
            discovery=discovery,
            auth=auth,
            worker_keys=None if worker_keys is None else PoolKeys(worker_keys),
        )
    )
    # What start-up made (modules, the app) lives as long as the process. Frozen,
    # it is out of the collector's sight: a full collection no longer walks its
    # tens of thousands of objects (about 20 ms each time, with calls waiting).
    gc.collect()
    gc.freeze()
    log.info("router starting", extra={"host": options.host, "port": options.port})
    # run_app stops accepting on SIGTERM, lets in-flight calls finish (up to the
    # shutdown timeout), runs the cleanup contexts and returns: exit status 0.
    web.run_app(
        app,
        loop=_event_loop(),
        host=options.host,
        port=options.port,
        shutdown_timeout=options.shutdown_timeout,
        reuse_port=options.reuse_port or None,
        backlog=LISTEN_BACKLOG,
        access_log=None,
        print=None,
        # A request line or header up to 64 KiB reaches the router, so a long
        # session id or token gets the router's own error naming the limit;
        # past that, aiohttp's parser answers a plain 400.
        max_line_size=HEAD_LIMIT_BYTES,
        max_field_size=HEAD_LIMIT_BYTES,
    )
    log.info("router stopped")


if __name__ == "__main__":
    main()

"""``bridgepool-router``: run the router with a static or Kubernetes backend."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from bridgepool_router import logs
from bridgepool_router.app import RouterConfig, create_app
from bridgepool_router.discovery import Discovery
from bridgepool_router.discovery.static import StaticConfigError, StaticDiscovery

log = logging.getLogger("bridgepool_router")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bridgepool-router", description="Session-sticky router for BridgePool workers."
    )
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--static",
        action="append",
        default=[],
        metavar="POOL=URL[,URL...]",
        help="route POOL to these worker base URLs (repeatable)",
    )
    p.add_argument(
        "--static-file",
        type=Path,
        help="YAML/JSON file of pools (re-read when it changes; see README)",
    )
    p.add_argument(
        "--static-reload-seconds",
        type=float,
        default=1.0,
        help="how often the static file is checked for changes",
    )
    p.add_argument("--kubernetes", action="store_true", help="discover pools in Kubernetes")
    p.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="namespace to watch (repeatable; default: all namespaces)",
    )
    p.add_argument("--shutdown-timeout", type=float, default=30.0)
    p.add_argument("--log-level", default="INFO")
    return p


def build_discovery(args: argparse.Namespace) -> Discovery:
    if args.kubernetes:
        if args.static or args.static_file:
            raise StaticConfigError("--kubernetes cannot be combined with --static/--static-file")
        from bridgepool_router.discovery.kubernetes import KubernetesDiscovery

        return KubernetesDiscovery(namespaces=args.namespace)
    if not args.static and not args.static_file:
        raise StaticConfigError("give --static POOL=URL[,URL...], --static-file or --kubernetes")
    return StaticDiscovery(args.static, args.static_file, reload_seconds=args.static_reload_seconds)


def _event_loop() -> asyncio.AbstractEventLoop:
    # uvloop roughly halves the per-call cost of the proxy path; asyncio's loop
    # works too, only slower.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_level)
    try:
        discovery = build_discovery(args)
    except (StaticConfigError, OSError) as exc:
        print(f"bridgepool-router: {exc}", file=sys.stderr)
        sys.exit(2)
    app = create_app(RouterConfig(discovery=discovery))
    log.info("router starting", extra={"host": args.host, "port": args.port})
    # run_app stops accepting on SIGTERM, lets in-flight calls finish (up to the
    # shutdown timeout), runs the cleanup contexts and returns: exit status 0.
    web.run_app(
        app,
        loop=_event_loop(),
        host=args.host,
        port=args.port,
        shutdown_timeout=args.shutdown_timeout,
        access_log=None,
        print=None,
    )
    log.info("router stopped")


if __name__ == "__main__":
    main()

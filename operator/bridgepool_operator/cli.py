"""``bridgepool-operator``: run the operator (a thin wrapper over kopf's runner)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence

import kopf
from prometheus_client import start_http_server

from .config import PREFIX, OperatorConfig


def _env_port(p: argparse.ArgumentParser, name: str, default: int) -> int:
    """A port number from ``BRIDGEPOOL_OPERATOR_<name>``; a bad one stops the
    operator with a message naming the variable, not a traceback."""
    raw = os.environ.get(PREFIX + name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        p.error(f"{PREFIX}{name}={raw!r} is not a port number")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="bridgepool-operator", description="Reconcile BridgePools into worker pods."
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="Namespace to serve (repeatable; globs allowed).",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="Serve the cluster.")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=_env_port(p, "METRICS_PORT", 9090),
        help="Prometheus metrics port (0: off).",
    )
    p.add_argument(
        "--liveness-port",
        type=int,
        default=_env_port(p, "LIVENESS_PORT", 8081),
        help="kopf liveness endpoint port, /healthz (0: off).",
    )
    p.add_argument("--bind", default=env.get(PREFIX + "BIND", "0.0.0.0"), help="Listen address.")
    p.add_argument("--verbose", action="store_true", help="Debug logging.")
    args = p.parse_args(argv)
    if not args.namespace and not args.all_namespaces:
        p.error("give --namespace NS (repeatable) or --all-namespaces")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # JSON log lines, one per line, through the stdlib logging module.
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON)
    logging.getLogger("bridgepool").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:
        # kopf logs every handled pod event at info; keep its warnings and errors.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.bind)
    from . import main as _registrations  # noqa: F401  (registers the handlers)

    liveness = f"http://{args.bind}:{args.liveness_port}/healthz" if args.liveness_port else None
    # kopf installs SIGINT/SIGTERM handlers itself and stops cleanly on them.
    asyncio.run(
        kopf.operator(
            clusterwide=args.all_namespaces,
            namespaces=args.namespace,
            liveness_endpoint=liveness,
            standalone=True,
            memo=kopf.Memo(config=OperatorConfig.from_env()),
        )
    )


if __name__ == "__main__":
    main()

"""``bridgepool-operator``: run the operator (a thin wrapper over kopf's runner)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import kopf
from prometheus_client import start_http_server

from bridgepool import logs
from bridgepool.config import ConfigError

from .config import load_config, release_keys


def main(argv: Sequence[str] | None = None) -> None:
    logs.configure("operator")
    try:
        config = load_config(sys.argv[1:] if argv is None else argv, os.environ)
        keys = release_keys(config)  # read now: a bad key directory stops the start here
    except ConfigError as exc:
        print(f"bridgepool-operator: {exc}", file=sys.stderr)
        sys.exit(2)
    logs.configure("operator", config.log_level)
    if config.log_level != "debug":
        # kopf logs every handled pod event at info; keep its warnings and errors.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    if config.metrics_port:
        start_http_server(config.metrics_port, addr=config.bind)
    from . import main as _registrations  # noqa: F401  (registers the handlers)

    liveness = (
        f"http://{config.bind}:{config.liveness_port}/healthz" if config.liveness_port else None
    )
    # kopf installs SIGINT/SIGTERM handlers itself and stops cleanly on them.
    asyncio.run(
        kopf.operator(
            clusterwide=config.all_namespaces,
            namespaces=list(config.namespace),
            liveness_endpoint=liveness,
            standalone=True,
            memo=kopf.Memo(config=config, release_keys=keys),
        )
    )


if __name__ == "__main__":
    main()

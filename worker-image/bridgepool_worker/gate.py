"""Who this worker answers (:mod:`bridgepool.credentials`).

The probes (``/healthz``, ``/readyz``) answer anyone. Everything else takes a
caller that sends one of the pool's keys: its router, the operator, a peer
worker. The scrape token opens ``GET /metrics`` and nothing else. A worker with
no keys answers only its probes, unless it was started open
(``--open-access``), which it logs at start. A refusal is decided from the
request's head alone: the body is never read.
"""

from __future__ import annotations

import logging

from bridgepool.credentials import KeyDir, Keys, presented_key
from bridgepool.errors import forbidden, unauthenticated
from bridgepool_worker.config import WorkerConfig

log = logging.getLogger("bridgepool_worker")

PROBES = frozenset({"/healthz", "/readyz"})
METRICS = "/metrics"


class Gate:
    """The worker's keys (re-read when their directory changes), or none on
    an open worker."""

    def __init__(self, config: WorkerConfig) -> None:
        self.open = config.open_access
        self._keys = None if config.keys_dir is None else KeyDir(config.keys_dir)
        if self.open:
            log.warning(
                "open access: this worker answers every caller, without a key "
                "(--open-access); use it only where no one else can reach it"
            )
        elif self._keys is None:
            log.warning("no keys (BRIDGEPOOL_WORKER_KEYS_DIR): this worker answers only its probes")

    def keys(self) -> Keys | None:
        return None if self._keys is None else self._keys.keys()

    def admit(self, method: str, path: str, authorization: str | None) -> str | None:
        """The pool key the caller sent (None: a probe, an open worker or the
        scrape token on /metrics); raises 401 or 403 saying why not."""
        if path in PROBES or self.open:
            return None
        keys = self.keys()
        if keys is None:
            raise unauthenticated(
                "this worker has no keys (BRIDGEPOOL_WORKER_KEYS_DIR) and answers only "
                "/healthz and /readyz"
            )
        presented = presented_key(authorization)
        if presented is None:
            raise unauthenticated(
                "this worker answers only its pool's router, operator and workers: "
                "send the pool's key as 'Authorization: Bearer KEY'"
            )
        key = keys.matching(presented)
        if key is not None:
            return key
        if keys.opens_metrics(presented):
            if method == "GET" and path == METRICS:
                return None
            raise forbidden("the scrape token opens GET /metrics only")
        raise unauthenticated("the key sent is not this worker's pool key")

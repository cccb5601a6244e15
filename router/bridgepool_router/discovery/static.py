"""Static discovery: pools and worker URLs from the command line or a file.

A pool is a namespace and a name, as on a cluster: ``team-a/demo``, or a bare
``demo`` in the default namespace (``default``, or the file's ``namespace``).

The file (YAML or JSON) is re-read when it changes, which is how a test or an
operator outside Kubernetes marks a worker draining::

    namespace: default                          # optional: for bare pool names
    pools:
      demo:
        urls: [http://127.0.0.1:9001, http://127.0.0.1:9002]
        draining: [http://127.0.0.1:9002]      # optional: which of ``urls`` drain
        workers:                                # optional: workers named as listed
          - {name: demo-0, url: http://127.0.0.1:9003}
          - {name: demo-1, url: http://127.0.0.1:9004, draining: true, ready: false}
        routing: {queue: {maxLength: 10}}       # optional, RoutingSettings (camelCase)
        sessions: {idleTtlSeconds: 60}          # optional, SessionSettings

A worker of ``urls`` is named by its host:port. A worker of ``workers`` has
the name given, as a pod's name is on a cluster (start the worker with that
``--name``, so the router and the worker call it the same), and the readiness
its supervisor reports (``ready``, default true; false: no calls until the
router's own health checks find it up); ``draining`` defaults to false. A
pool may use ``urls``, ``workers`` or both; its workers' names and URLs are
unique within it. A pool may also be given as a plain list of URLs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from bridgepool.errors import BridgePoolError
from bridgepool.names import DEFAULT_NAMESPACE, PoolRef, namespace_problem
from bridgepool.spec import RoutingSettings, SessionSettings
from bridgepool_router.discovery import DiscoverySink, PoolSnapshot, WorkerEndpoint

log = logging.getLogger(__name__)


class StaticConfigError(ValueError):
    """The static pool list is malformed; the message names the problem."""


def worker_name(url: str) -> str:
    """A static worker's name: its host:port."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise StaticConfigError(f"worker URL {url!r} is not an http(s) URL")
    return parts.netloc


def pool_ref(text: str, default_namespace: str, where: str) -> PoolRef:
    """``NAMESPACE/POOL`` or a bare ``POOL`` (in ``default_namespace``), checked."""
    try:
        return PoolRef.parse(text, default_namespace)
    except BridgePoolError as exc:
        raise StaticConfigError(f"{where}: {exc.info.message}") from None


def parse_static_flag(value: str) -> tuple[PoolRef, list[str]]:
    """``[NAMESPACE/]POOL=URL[,URL...]`` -> (pool, urls)."""
    pool, sep, urls = value.partition("=")
    if not sep or not pool or not urls:
        raise StaticConfigError(f"--static {value!r}: expected [NAMESPACE/]POOL=URL[,URL...]")
    url_list = [u.strip().rstrip("/") for u in urls.split(",") if u.strip()]
    for url in url_list:
        worker_name(url)
    return pool_ref(pool, DEFAULT_NAMESPACE, f"--static {value!r}"), url_list


# Keys of a pool's mapping, and of one entry of its ``workers``.
POOL_KEYS = frozenset({"urls", "draining", "workers", "routing", "sessions"})
WORKER_KEYS = frozenset({"name", "url", "draining", "ready"})
# A worker's name goes into headers, metric labels and log lines as it is.
_WORKER_NAME = re.compile(r"[!-~]{1,253}")
WORKER_NAME_RULE = "a worker name is 1 to 253 printable ASCII characters, no spaces"


def _url_list(entry: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = entry.get(key) or []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise StaticConfigError(f"{where}: {key}: expected a list of URLs")
    return [str(u).rstrip("/") for u in value]


def _flag(item: Mapping[str, Any], key: str, default: bool, at: str) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        raise StaticConfigError(f"{at}: {key} must be true or false; got {value!r}")
    return value


def _listed_worker(item: object, at: str) -> WorkerEndpoint:
    """One entry of a pool's ``workers``; ``at`` names it in errors."""
    if not isinstance(item, Mapping):
        raise StaticConfigError(f"{at}: expected a mapping with a name and a url")
    unknown = set(item) - WORKER_KEYS
    if unknown:
        raise StaticConfigError(
            f"{at}: unknown keys {sorted(map(str, unknown))}; "
            f"a worker has {', '.join(sorted(WORKER_KEYS))}"
        )
    missing = [key for key in ("name", "url") if key not in item]
    if missing:
        raise StaticConfigError(f"{at}: missing {' and '.join(missing)}")
    name, url = item["name"], item["url"]
    if not isinstance(name, str) or _WORKER_NAME.fullmatch(name) is None:
        raise StaticConfigError(f"{at}: {WORKER_NAME_RULE}; got {name!r}")
    if not isinstance(url, str):
        raise StaticConfigError(f"{at}: url must be a string; got {url!r}")
    try:
        worker_name(url)
    except StaticConfigError as exc:
        raise StaticConfigError(f"{at}: {exc}") from None
    return WorkerEndpoint(
        name,
        url.rstrip("/"),
        draining=_flag(item, "draining", False, at),
        ready=_flag(item, "ready", True, at),
    )


def pool_workers(entry: Mapping[str, Any], where: str) -> tuple[WorkerEndpoint, ...]:
    """A pool's workers: those of ``urls`` (named host:port; ``draining`` lists
    those that drain), then those of ``workers``; each name and URL once."""
    urls = _url_list(entry, "urls", where)
    draining = set(_url_list(entry, "draining", where))
    if draining - set(urls):
        raise StaticConfigError(
            f"{where}: draining URLs not in urls: {sorted(draining - set(urls))} "
            "(a worker of 'workers' has its own draining flag)"
        )
    listed: list[tuple[str, WorkerEndpoint]] = []  # (the entry, as errors name it; the worker)
    for index, url in enumerate(urls):
        entry_name = f"urls[{index}] ({url!r})"
        try:
            worker = WorkerEndpoint(worker_name(url), url, draining=url in draining)
        except StaticConfigError as exc:
            raise StaticConfigError(f"{where}: {entry_name}: {exc}") from None
        listed.append((entry_name, worker))
    items = entry.get("workers") or []
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise StaticConfigError(f"{where}: workers: expected a list of mappings")
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        entry_name = f"workers[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")
        listed.append((entry_name, _listed_worker(item, f"{where}: {entry_name}")))
    names: dict[str, str] = {}
    addresses: dict[str, str] = {}
    for entry_name, worker in listed:
        for seen, key, what in ((names, worker.worker, "name"), (addresses, worker.url, "URL")):
            if key in seen:
                raise StaticConfigError(
                    f"{where}: {entry_name}: {what} {key!r} is already that of {seen[key]}: "
                    "each worker's name and URL are its own within a pool"
                )
            seen[key] = entry_name
    return tuple(worker for _, worker in listed)


def snapshots_from_mapping(data: Any, source: str) -> list[PoolSnapshot]:
    """Translate the static file's content into pool snapshots."""
    if not isinstance(data, Mapping) or not isinstance(data.get("pools"), Mapping):
        raise StaticConfigError(f"{source}: expected a mapping with a 'pools' mapping")
    unknown_top = set(data) - {"pools", "namespace"}
    if unknown_top:
        raise StaticConfigError(f"{source}: unknown keys {sorted(unknown_top)}")
    namespace = data.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or namespace_problem(namespace):
        raise StaticConfigError(f"{source}: namespace: {namespace_problem(str(namespace))}")
    out = []
    seen: set[PoolRef] = set()
    for name, entry in data["pools"].items():
        where = f"{source}: pool {name!r}"
        ref = pool_ref(str(name), namespace, where)
        if ref in seen:
            raise StaticConfigError(f"{where}: pool {str(ref)!r} is listed twice")
        seen.add(ref)
        if isinstance(entry, Sequence) and not isinstance(entry, str):
            entry = {"urls": list(entry)}
        if not isinstance(entry, Mapping):
            raise StaticConfigError(f"{where}: expected a list of URLs or a mapping")
        unknown = set(entry) - POOL_KEYS
        if unknown:
            raise StaticConfigError(f"{where}: unknown keys {sorted(unknown)}")
        workers = pool_workers(entry, where)
        try:
            routing = RoutingSettings.model_validate(entry.get("routing") or {})
            sessions = SessionSettings.model_validate(entry.get("sessions") or {})
        except ValidationError as exc:
            raise StaticConfigError(f"{where}: {exc}") from exc
        out.append(PoolSnapshot(ref, workers, routing, sessions))
    return out


def load_static_file(path: Path) -> list[PoolSnapshot]:
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise StaticConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc
    return snapshots_from_mapping(data, str(path))


class StaticDiscovery:
    """Pools from ``--static`` flags and/or a file that is re-read on change."""

    def __init__(
        self,
        flags: Sequence[str] = (),
        file: Path | None = None,
        *,
        routing: RoutingSettings | None = None,
        reload_seconds: float = 1.0,
    ) -> None:
        self._flag_pools = [parse_static_flag(f) for f in flags]
        self._routing = routing or RoutingSettings()
        self._file = file
        self._reload_seconds = reload_seconds
        if file is not None:
            load_static_file(file)  # fail at start-up, not in the background

    def _flag_snapshots(self) -> list[PoolSnapshot]:
        return [
            PoolSnapshot(
                pool, tuple(WorkerEndpoint(worker_name(u), u) for u in urls), self._routing
            )
            for pool, urls in self._flag_pools
        ]

    async def run(self, sink: DiscoverySink) -> None:
        flag_snaps = self._flag_snapshots()
        for snap in flag_snaps:
            sink.apply(snap)
        if self._file is None:
            sink.mark_synced()
            return
        known: set[PoolRef] = set()
        last_text: str | None = None
        while True:
            try:
                text = await asyncio.to_thread(self._file.read_text)
                if text != last_text:
                    last_text = text
                    snaps = await asyncio.to_thread(load_static_file, self._file)
                    names = {s.ref for s in snaps}
                    for snap in snaps:
                        sink.apply(snap)
                    flag_names = {s.ref for s in flag_snaps}
                    for gone in known - names - flag_names:
                        sink.remove_pool(gone)
                    known = names
                    log.info("static pools loaded", extra={"pools": sorted(map(str, names))})
                    sink.mark_synced()
            except (OSError, StaticConfigError) as exc:
                # Keep the last good view; a half-written file must not empty a pool.
                log.warning("static pool file not applied", extra={"error": str(exc)})
            await asyncio.sleep(self._reload_seconds)

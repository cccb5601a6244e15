"""Kubernetes discovery: watch each pool's worker pods (by the pool label) and
the BridgePool objects (for per-pool routing settings), without blocking the
event loop (kubernetes_asyncio).

The translation from API objects to router terms is pure (:func:`worker_from_pod`,
:func:`settings_from_bridgepool`); the watch loops only list, watch, and relist
when the API says the resource version is gone (410).

A pool is its namespace and name: pools of one name in two namespaces are two
pools.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bridgepool.backoff import backoff_seconds
from bridgepool.labels import ANNOTATION_DRAINING, GROUP, LABEL_POOL, PLURAL, VERSION
from bridgepool.names import DEFAULT_NAMESPACE, PoolRef
from bridgepool.spec import RoutingSettings, SessionSettings
from bridgepool.workers import pod_ready, worker_url
from bridgepool_router.discovery import DiscoverySink, PoolSnapshot, WorkerEndpoint

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300  # the API server closes watches anyway; re-watch from the last version


# -- pure translation ---------------------------------------------------------


def worker_from_pod(pod: Mapping[str, Any]) -> tuple[PoolRef, WorkerEndpoint] | None:
    """(pool, worker) for a pod the router can route to, else None.

    A pod without an IP or not running yet has nothing to route to. A pod being
    deleted counts as draining: it takes no new sessions, its sessions keep
    going until it is gone.
    """
    meta = pod.get("metadata") or {}
    pool = (meta.get("labels") or {}).get(LABEL_POOL)
    url = worker_url(pod)
    if not pool or url is None:
        return None
    draining = ANNOTATION_DRAINING in (meta.get("annotations") or {}) or bool(
        meta.get("deletionTimestamp")
    )
    ref = PoolRef(meta.get("namespace") or DEFAULT_NAMESPACE, pool)
    return ref, WorkerEndpoint(meta["name"], url, draining=draining, ready=pod_ready(pod))


@dataclass(frozen=True)
class PoolSettings:
    routing: RoutingSettings
    sessions: SessionSettings


def settings_from_bridgepool(obj: Mapping[str, Any]) -> tuple[PoolRef, PoolSettings]:
    """(pool, settings) from a BridgePool object's ``spec.routing``/``spec.sessions``.

    Raises ValueError naming the problem if the settings are invalid (the
    operator's CRD validation should have stopped that already).
    """
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ValueError("BridgePool without metadata.name")
    ref = PoolRef(meta.get("namespace") or DEFAULT_NAMESPACE, name)
    spec = obj.get("spec") or {}
    try:
        return ref, PoolSettings(
            RoutingSettings.model_validate(spec.get("routing") or {}),
            SessionSettings.model_validate(spec.get("sessions") or {}),
        )
    except ValidationError as exc:
        problem = f"BridgePool {str(ref)!r}: invalid routing/sessions settings: {exc}"
        raise ValueError(problem) from exc


class PoolView:
    """Pods and settings seen so far, turned into snapshots per pool."""

    def __init__(self) -> None:
        self.pods: dict[tuple[str, str], tuple[PoolRef, WorkerEndpoint]] = {}
        self.settings: dict[tuple[str, str], tuple[PoolRef, PoolSettings]] = {}

    def pool_names(self) -> set[PoolRef]:
        return {p for p, _ in self.pods.values()} | {p for p, _ in self.settings.values()}

    def snapshot(self, pool: PoolRef) -> PoolSnapshot:
        workers = sorted((e for p, e in self.pods.values() if p == pool), key=lambda e: e.worker)
        found = [s for p, s in self.settings.values() if p == pool]
        settings = found[0] if found else PoolSettings(RoutingSettings(), SessionSettings())
        return PoolSnapshot(pool, tuple(workers), settings.routing, settings.sessions)

    def set_pod(self, event_type: str, pod: Mapping[str, Any]) -> set[PoolRef]:
        """Apply a pod event; returns the pools it touched."""
        meta = pod.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        touched = {self.pods[key][0]} if key in self.pods else set()
        translated = None if event_type == "DELETED" else worker_from_pod(pod)
        if translated is None:
            self.pods.pop(key, None)
        else:
            self.pods[key] = translated
            touched.add(translated[0])
        return touched

    def set_bridgepool(self, event_type: str, obj: Mapping[str, Any]) -> set[PoolRef]:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        touched = {self.settings[key][0]} if key in self.settings else set()
        if event_type == "DELETED":
            self.settings.pop(key, None)
            return touched
        try:
            pool, settings = settings_from_bridgepool(obj)
        except ValueError as exc:
            log.warning("BridgePool settings ignored", extra={"error": str(exc)})
            return touched
        self.settings[key] = (pool, settings)
        return touched | {pool}


# -- the watch shell ----------------------------------------------------------

Lister = Callable[..., Awaitable[Any]]


class KubernetesDiscovery:
    def __init__(self, namespaces: Sequence[str] = ()) -> None:
        self.namespaces = list(namespaces)
        self.view = PoolView()

    async def run(self, sink: DiscoverySink) -> None:
        from kubernetes_asyncio import client, config
        from kubernetes_asyncio.config import ConfigException

        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except ConfigException:
            await config.load_kube_config()
        async with client.ApiClient() as api:
            core = client.CoreV1Api(api)
            custom = client.CustomObjectsApi(api)
            selector = LABEL_POOL  # every pod carrying the pool label
            listers: list[tuple[str, Lister, dict[str, Any]]] = []
            if self.namespaces:
                for ns in self.namespaces:
                    listers.append(
                        (
                            "pods",
                            core.list_namespaced_pod,
                            {"namespace": ns, "label_selector": selector},
                        )
                    )
                    listers.append(
                        (
                            "bridgepools",
                            custom.list_namespaced_custom_object,
                            {"group": GROUP, "version": VERSION, "namespace": ns, "plural": PLURAL},
                        )
                    )
            else:
                listers.append(
                    ("pods", core.list_pod_for_all_namespaces, {"label_selector": selector})
                )
                listers.append(
                    (
                        "bridgepools",
                        custom.list_cluster_custom_object,
                        {"group": GROUP, "version": VERSION, "plural": PLURAL},
                    )
                )
            first_lists = [asyncio.Event() for _ in listers]
            tasks = [
                asyncio.create_task(self._watch(kind, fn, kwargs, sink, synced))
                for (kind, fn, kwargs), synced in zip(listers, first_lists, strict=True)
            ]
            try:
                await asyncio.gather(*(e.wait() for e in first_lists))
                sink.mark_synced()
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    def _apply(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> set[PoolRef]:
        if kind == "pods":
            return self.view.set_pod(event_type, obj)
        return self.view.set_bridgepool(event_type, obj)

    def _publish(self, sink: DiscoverySink, pools: set[PoolRef], before: set[PoolRef]) -> None:
        now = self.view.pool_names()
        for pool in sorted(pools & now):
            sink.apply(self.view.snapshot(pool))
        for pool in sorted(before - now):
            sink.remove_pool(pool)

    async def _watch(
        self,
        kind: str,
        lister: Lister,
        kwargs: dict[str, Any],
        sink: DiscoverySink,
        synced: asyncio.Event,
    ) -> None:
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        failures = 0
        while True:
            try:
                # List: the full picture, replacing what this lister saw before.
                resp = await lister(**kwargs, _preload_content=False)
                listing = await resp.json()
                before = self.view.pool_names()
                store = self.view.pods if kind == "pods" else self.view.settings
                ns = kwargs.get("namespace")
                stale = [k for k in store if ns is None or k[0] == ns]
                touched = {store[k][0] for k in stale}
                for k in stale:
                    del store[k]
                for item in listing.get("items") or []:
                    touched |= self._apply(kind, "ADDED", item)
                self._publish(sink, touched, before)
                synced.set()
                version = listing.get("metadata", {}).get("resourceVersion")
                failures = 0
                # Watch from the listed version until the API says it is gone.
                while True:
                    w = watch.Watch()
                    async with w.stream(
                        lister, **kwargs, resource_version=version,
                        timeout_seconds=WATCH_TIMEOUT_SECONDS,
                    ) as stream:  # fmt: skip
                        async for event in stream:
                            etype = event["type"]
                            if etype == "BOOKMARK":
                                continue
                            before = self.view.pool_names()
                            self._publish(
                                sink, self._apply(kind, etype, event["raw_object"]), before
                            )
                    version = w.resource_version or version
            except asyncio.CancelledError:
                raise
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch expired, relisting", extra={"kind": kind})
                    continue
                failures += 1
                log.warning("watch failed", extra={"kind": kind, "error": str(exc)})
            except Exception as exc:  # network trouble: relist after a pause
                failures += 1
                log.warning("watch failed", extra={"kind": kind, "error": repr(exc)})
            await asyncio.sleep(
                backoff_seconds(failures, base=1.0, cap=30.0, jitter=random.random(), floor=0.1)
            )

"""How fast does the operator turn BridgePools into ready workers, compared with
Deployments doing the same on the same cluster? Measured side by side in one run:

* N BridgePools (``replicas: 1``; the product's default health settings) are
  created in a fresh namespace ``bp-bench-<random>`` served by a real
  ``bridgepool-operator`` process, run as the chart runs it: with a release key
  directory (made fresh for the run), from which it derives each pool's key and
  writes it into the Secret ``<pool>-bridgepool-keys`` its workers mount, and
  with a NetworkPolicy per pool. Per pool, seconds from the create call to its
  first worker pod seen, to that pod Ready, and to the pool's status saying so
  (``settled``). Then every pool's template gets a new pod label: seconds from
  the patch to the first pod of the new revision seen, and to the rollout being
  complete (settled at the new generation, the old pod deleted or deleting).
  Last, every pool is deleted: seconds from the delete call to the object gone
  (kopf lifts its finalizer once the pool's loop has ended).
* The baseline: N Deployments of the same pod (the operator's own pod builder
  makes it: same image, probes, port and grace period), 1 replica, surge 1,
  unavailable 0, in another fresh namespace, timed the same way (status ready:
  ready, updated and available replicas at the observed generation); a
  Deployment has no finalizer, so its deletion is the floor. The pod mounts
  its pool's key Secret, so each Deployment's create call first creates that
  Secret (the same key the operator would write), as a user of Deployments
  would apply both; it has no NetworkPolicy.
* The operator's reconcile passes, from ``bridgepool_operator_reconcile_time_seconds``
  scraped before and after each window (creation, a steady window with every
  pool settled, rollout): passes/s, the exact mean, and p50/p90/p99 interpolated
  linearly inside the histogram's buckets, as Prometheus' ``histogram_quantile``
  does; plus the operator's CPU (``process_cpu_seconds_total``).

Pods and objects are observed by watches running in threads: each is stamped
with this machine's monotonic clock when its event arrives (creation timestamps
are second-granular). Calls are made from a small thread pool. p50/p90 are
nearest-rank over the N objects. BridgePools go first, then Deployments, once
the pools' pods are gone. Needs a cluster whose pod addresses this machine
reaches (the operator reads each worker's ``/v1/stats``), the CRD (applied
here), and the worker image in the node (pods use ``imagePullPolicy: Never``).
The operator runs on this machine, not as a pod, so the pools' NetworkPolicies
(which admit the release's router and operator pods: here the benchmark names
labels no pod carries) let it through only as the node's own traffic, which
the local cluster's kube-router admits (the kubelet's probes need it); on a
cluster whose plugin does not, give ``--no-network-policy``.

On the 2-core local cluster: about 3 minutes with 10 of each, 7 to 8 with 50,
where 50 workers take 40-60 s from create to Ready (for Deployments too).

    .venv/bin/python -m benchmarks.operator_reconcile [--pools 50] [--kubeconfig PATH]
        [--image localhost/bridgepool-worker:dev] [--steady 30] [--interval 5]
        [--health-interval SECONDS] [--no-network-policy]
"""

from __future__ import annotations

import argparse
import base64
import functools
import math
import os
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from bridgepool import labels
from bridgepool.credentials import KEY_FILE, Keys, new_key, pool_keys, write_keys
from bridgepool.names import PoolRef as PoolName
from bridgepool.spec import BridgePoolSpec, HealthSettings
from bridgepool.workers import pod_ready
from bridgepool_operator.pods import PoolRef, build_worker_pod, revision_of
from e2e import (
    components,  # the e2e helpers (on the path through benchmarks/__init__.py)
    support,
)

REPLICAS = 1
ROLLOUT_LABEL = "bench.bridgepool.io/rollout"
DEPLOYMENT_LABEL = "bench.bridgepool.io/deployment"
CALLERS = 6  # threads making the create and patch calls
RECONCILE = "bridgepool_operator_reconcile_time_seconds"
QUANTILES = (0.5, 0.9, 0.99)
# What the pools' NetworkPolicies admit besides the pools' own workers: pods of
# these labels in the pools' namespace, of which there are none (the operator
# runs on this machine, and nothing calls the workers through a router).
POLICY_PEERS = "app.kubernetes.io/name=bridgepool-bench,app.kubernetes.io/component="
STARTED = time.monotonic()  # for the progress lines

Json = dict[str, Any]
Milestones = dict[str, float]  # milestone -> seconds since the call


class BenchmarkFailed(Exception):
    """Something the benchmark waits for did not happen; the message says what."""


# -- watches -------------------------------------------------------------------------


def _waiting_reason(pod: Mapping[str, Any]) -> str | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting")
        if waiting:
            return str(waiting.get("reason"))
    return None


@dataclass
class PodRecord:
    """One pod as the watch saw it: when it appeared, got Ready, started going."""

    group: str  # the pool or Deployment it belongs to
    seen: float
    ready: float | None = None
    gone: float | None = None
    waiting: str | None = None


class PodBook:
    """Every pod of a namespace carrying ``group_label``, grouped by that label's value."""

    def __init__(self, api: client.ApiClient, namespace: str, group_label: str) -> None:
        self._group_label = group_label
        self._pods: dict[str, PodRecord] = {}
        self._lock = threading.Lock()
        core = client.CoreV1Api(api)
        call = functools.partial(core.list_namespaced_pod, namespace, label_selector=group_label)
        self.watcher = components.Watcher(call, self._on_event)

    def _on_event(self, now: float, kind: str, pod: Json) -> None:
        meta = pod["metadata"]
        group = (meta.get("labels") or {}).get(self._group_label)
        if group is None:
            return
        with self._lock:
            record = self._pods.setdefault(meta["name"], PodRecord(group, now))
        if record.ready is None and pod_ready(pod):
            record.ready = now
        if record.gone is None and (kind == "DELETED" or meta.get("deletionTimestamp")):
            record.gone = now
        record.waiting = _waiting_reason(pod)

    def records(self, group: str | None = None) -> list[PodRecord]:
        with self._lock:
            return [r for r in self._pods.values() if group is None or r.group == group]

    def first_seen(self, group: str, after: float) -> float | None:
        """When the group's first pod appeared after ``after``."""
        seen = [r.seen for r in self.records(group) if r.seen >= after]
        return min(seen) if seen else None

    def all_ready(self, group: str, after: float, replicas: int) -> float | None:
        """When ``replicas`` of the group's pods that appeared after ``after`` were Ready."""
        ready = sorted(r.ready for r in self.records(group) if r.seen >= after and r.ready)
        return ready[replicas - 1] if len(ready) >= replicas else None


class ObjectBook:
    """Every state of a namespace's pools (or Deployments) the watch delivered, by name."""

    def __init__(self, call: Callable[..., Any]) -> None:
        self._history: dict[str, list[tuple[float, Json]]] = {}
        self._deleted: dict[str, float] = {}
        self._lock = threading.Lock()
        self.watcher = components.Watcher(call, self._on_event)

    def _on_event(self, now: float, kind: str, obj: Json) -> None:
        name = obj["metadata"]["name"]
        with self._lock:
            if kind in ("ADDED", "MODIFIED"):
                self._history.setdefault(name, []).append((now, obj))
            elif kind == "DELETED":
                self._deleted[name] = now

    def _states(self, name: str) -> list[tuple[float, Json]]:
        with self._lock:
            return list(self._history.get(name, []))

    def latest(self, name: str) -> Json | None:
        states = self._states(name)
        return states[-1][1] if states else None

    def first(self, name: str, after: float, holds: Callable[[Json], bool]) -> float | None:
        """When a state of ``name`` for which ``holds`` is true first arrived after ``after``."""
        return next((t for t, obj in self._states(name) if t >= after and holds(obj)), None)

    def deleted(self, name: str, after: float) -> float | None:
        """When the watch saw ``name`` removed, if after ``after``."""
        with self._lock:
            when = self._deleted.get(name)
        return when if when is not None and when >= after else None

    def updates_between(self, start: float, end: float) -> int:
        with self._lock:
            return sum(start <= t < end for states in self._history.values() for t, _ in states)


@dataclass
class Books:
    pods: PodBook
    objects: ObjectBook

    def diagnose(self, pending: Sequence[str]) -> str:
        """Why objects may be stuck: pods' waiting reasons, one object's status."""
        pods = self.pods.records()
        stuck = [r for r in pods if r.ready is None and r.gone is None]
        reasons = Counter(r.waiting or "no waiting reason" for r in stuck)
        status = str((self.objects.latest(pending[0]) or {}).get("status"))[:600]
        return (
            f"{len(pods)} pods seen for {len({r.group for r in pods})} objects; "
            f"unready pods by reason: {dict(reasons)}; {pending[0]} status: {status}"
        )


# -- what is benchmarked -------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """BridgePools driven by the operator, or the Deployments of the baseline."""

    title: str
    pod_label: str  # the pod label naming the pod's pool or Deployment
    create: Callable[[str], object]
    change_template: Callable[[str], object]  # adds a pod label: a new revision
    delete: Callable[[str], object]
    lister: Callable[[client.ApiClient, str], Callable[..., Any]]  # list call to watch
    all_ready: Callable[[Json], bool]  # the status says: every worker ready and current


def pool_spec(health_interval: int | None) -> Json:
    """The benchmarked pools' spec over ``pool_manifest``'s, with the product's
    default health settings rather than the e2e suite's fast ones: with 50
    workers starting on a 2-core node, 1 s readiness checks stop getting
    through and 15 s of that gets workers replaced, which measures the node's
    overload rather than the operator."""
    health = HealthSettings().model_dump(by_alias=True, mode="json")
    if health_interval is not None:
        health["intervalSeconds"] = health_interval
    return {"replicas": REPLICAS, "health": health}


def pool_subject(pools: components.Pools, image: str, spec: Json) -> Subject:
    change = {"template": {"metadata": {"labels": {ROLLOUT_LABEL: "2"}}}}

    def lister(api: client.ApiClient, namespace: str) -> Callable[..., Any]:
        custom = client.CustomObjectsApi(api)
        args = (labels.GROUP, labels.VERSION, namespace, labels.PLURAL)
        return functools.partial(custom.list_namespaced_custom_object, *args)

    return Subject(
        title="BridgePool",
        pod_label=labels.LABEL_POOL,
        create=lambda name: pools.create(components.pool_manifest(name, image, spec=spec)),
        change_template=lambda name: pools.patch_spec(name, change),  # a merge patch
        delete=pools.delete,
        lister=lister,
        all_ready=lambda pool: components.settled(pool, REPLICAS),
    )


def deployment_manifest(name: str, namespace: str, image: str, pool: Json) -> Json:
    """A Deployment of the very pod a BridgePool of ``image`` and spec ``pool`` would get."""
    spec = BridgePoolSpec.model_validate(components.pool_manifest(name, image, spec=pool)["spec"])
    pod = build_worker_pod(PoolRef(name, namespace, uid="baseline"), spec, revision_of(spec))
    selector = {DEPLOYMENT_LABEL: name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {
                    "maxSurge": spec.rollout.max_surge,
                    "maxUnavailable": spec.rollout.max_unavailable,
                },
            },
            "template": {"metadata": {"labels": selector}, "spec": pod["spec"]},
        },
    }


def deployment_ready(deployment: Json) -> bool:
    status = deployment.get("status") or {}
    counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    return status.get("observedGeneration", 0) >= deployment["metadata"]["generation"] and all(
        status.get(key) == REPLICAS for key in counts
    )


def keys_secret(name: str, namespace: str, release: Keys) -> Json:
    """The key Secret a worker pod of pool ``name`` mounts, with the key the
    operator would write for it (no owner: nothing here would own it)."""
    key = pool_keys(release, PoolName(namespace, name)).current
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": labels.keys_secret_name(name), "labels": {DEPLOYMENT_LABEL: name}},
        "type": "Opaque",
        "data": {KEY_FILE: base64.b64encode(key.encode()).decode()},
    }


def deployment_subject(
    api: client.ApiClient, namespace: str, image: str, pool: Json, release: Keys
) -> Subject:
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    change = {"spec": {"template": {"metadata": {"labels": {ROLLOUT_LABEL: "2"}}}}}

    def lister(api: client.ApiClient, namespace: str) -> Callable[..., Any]:
        return functools.partial(client.AppsV1Api(api).list_namespaced_deployment, namespace)

    def create(name: str) -> object:
        # The pod mounts the Secret: made first, or the kubelet waits for it.
        secret = client.V1Secret.model_validate(keys_secret(name, namespace, release))
        core.create_namespaced_secret(namespace, secret)
        manifest = deployment_manifest(name, namespace, image, pool)
        return apps.create_namespaced_deployment(
            namespace, client.V1Deployment.model_validate(manifest)
        )

    return Subject(
        title="Deployment",
        pod_label=DEPLOYMENT_LABEL,
        create=create,
        change_template=lambda name: apps.patch_namespaced_deployment(name, namespace, change),
        delete=lambda name: apps.delete_namespaced_deployment(name, namespace),
        lister=lister,
        all_ready=deployment_ready,
    )


# -- measuring -----------------------------------------------------------------------


@contextmanager
def watching(cluster: support.Cluster, namespace: str, subject: Subject) -> Iterator[Books]:
    """Watch the subject's pods and objects in ``namespace``, each on its own connection."""
    with cluster.api_client() as pod_api, cluster.api_client() as object_api:
        books = Books(
            PodBook(pod_api, namespace, subject.pod_label),
            ObjectBook(subject.lister(object_api, namespace)),
        )
        books.pods.watcher.start()
        books.objects.watcher.start()
        try:
            yield books
        finally:
            books.pods.watcher.stop()
            books.objects.watcher.stop()


def in_parallel(call: Callable[[str], object], names: Sequence[str]) -> dict[str, float]:
    """``call(name)`` for every name, from a small thread pool; when each call began."""

    def timed(name: str) -> tuple[str, float]:
        started = time.monotonic()
        call(name)
        return name, started

    with ThreadPoolExecutor(max_workers=CALLERS) as pool:
        return dict(pool.map(timed, names))


def collect(
    what: str,
    started: Mapping[str, float],
    milestones: Callable[[str, float], Milestones | None],
    books: Books,
    timeout: float,
    check: Callable[[], None],
) -> dict[str, list[float]]:
    """Wait until every object's milestones are known (``check`` raises if waiting
    is pointless); each milestone's values."""
    deadline = time.monotonic() + timeout
    while True:
        check()
        found = {name: milestones(name, t0) for name, t0 in started.items()}
        done = {name: m for name, m in found.items() if m is not None}
        pending = [name for name in found if name not in done]
        if not pending:
            break
        if time.monotonic() > deadline:
            raise BenchmarkFailed(
                f"{what}: {len(pending)} of {len(found)} not there after {timeout:.0f}s; "
                + books.diagnose(pending)
            )
        time.sleep(0.25)
    keys = next(iter(done.values())).keys()
    return {key: [done[name][key] for name in started] for key in keys}


def measure(
    subject: Subject,
    books: Books,
    names: Sequence[str],
    *,
    timeout: float,
    steady_seconds: float = 0.0,
    checkpoint: Callable[[str], None] = lambda _: None,
    check: Callable[[], None] = lambda: None,
) -> dict[str, list[float]]:
    """Create, wait, (hold steady), change the template, wait, delete, wait:
    the milestones' times.

    ``checkpoint`` is called at "start", "created", "steady", "rolled" and "deleted";
    ``check`` while waiting, to raise BenchmarkFailed when waiting is pointless.
    """

    def created(name: str, t0: float) -> Milestones | None:
        times = {
            "first_pod": books.pods.first_seen(name, t0),
            "pod_ready": books.pods.all_ready(name, t0, REPLICAS),
            "status_ready": books.objects.first(name, t0, subject.all_ready),
        }
        return _since(t0, times)

    checkpoint("start")
    created_at = in_parallel(subject.create, names)
    results = collect(f"{subject.title}s ready", created_at, created, books, timeout, check)
    checkpoint("created")
    if steady_seconds:
        time.sleep(steady_seconds)
        checkpoint("steady")

    generations = {name: _generation(books.objects.latest(name)) for name in names}

    def rolled(name: str, t0: float) -> Milestones | None:
        def complete(obj: Json) -> bool:
            return _generation(obj) > generations[name] and subject.all_ready(obj)

        times = {
            "new_pod": books.pods.first_seen(name, t0),
            "rolled": books.objects.first(name, t0, complete),
        }
        return _since(t0, times)

    changed = in_parallel(subject.change_template, names)
    results |= collect(f"{subject.title}s rolled out", changed, rolled, books, timeout, check)
    checkpoint("rolled")
    results["pods"] = [float(len(books.pods.records(name))) for name in names]  # 2 if no churn

    def gone(name: str, t0: float) -> Milestones | None:
        return _since(t0, {"gone": books.objects.deleted(name, t0)})

    deleted = in_parallel(subject.delete, names)
    results |= collect(f"{subject.title}s deleted", deleted, gone, books, timeout, check)
    checkpoint("deleted")
    return results


def _since(t0: float, times: Mapping[str, float | None]) -> Milestones | None:
    if any(t is None for t in times.values()):
        return None
    return {key: t - t0 for key, t in times.items() if t is not None}


def _generation(obj: Json | None) -> int:
    return int((obj or {}).get("metadata", {}).get("generation") or 0)


# -- the operator's metrics -------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """The operator's cumulative counters at one moment (one ``/metrics`` read)."""

    at: float
    buckets: dict[float, float]  # upper bound -> passes that took at most that long
    passes: float
    pass_seconds: float
    cpu_seconds: float
    pod_actions: float
    not_success: float


def scrape(url: str) -> Scrape:
    text = httpx.get(url, timeout=10, trust_env=False).text
    at = time.monotonic()
    buckets: dict[float, float] = {}
    sums: defaultdict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{RECONCILE}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == "bridgepool_operator_reconcile_total":
                if sample.labels.get("result") != "success":
                    sums["not_success"] += sample.value
            else:
                sums[sample.name] += sample.value
    return Scrape(
        at=at,
        buckets=buckets,
        passes=sums[f"{RECONCILE}_count"],
        pass_seconds=sums[f"{RECONCILE}_sum"],
        cpu_seconds=sums["process_cpu_seconds_total"],
        pod_actions=sums["bridgepool_operator_pod_actions_total"],
        not_success=sums["not_success"],
    )


@dataclass(frozen=True)
class Window:
    """What the operator did between two scrapes."""

    name: str
    seconds: float
    buckets: dict[float, float]
    passes: float
    pass_seconds: float
    cpu_seconds: float
    pod_actions: float
    not_success: float
    object_updates: int  # pool ADDED/MODIFIED events seen: mostly status writes

    @classmethod
    def between(cls, name: str, before: Scrape, after: Scrape, books: Books) -> Window:
        return cls(
            name=name,
            seconds=after.at - before.at,
            buckets={le: n - before.buckets.get(le, 0.0) for le, n in after.buckets.items()},
            passes=after.passes - before.passes,
            pass_seconds=after.pass_seconds - before.pass_seconds,
            cpu_seconds=after.cpu_seconds - before.cpu_seconds,
            pod_actions=after.pod_actions - before.pod_actions,
            not_success=after.not_success - before.not_success,
            object_updates=books.objects.updates_between(before.at, after.at),
        )


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float:
    """The ``q``-quantile of cumulative bucket counts ``{upper bound: count}``.

    As Prometheus' ``histogram_quantile``: find the bucket holding rank
    ``q * total`` and interpolate linearly between its bounds (the lowest bucket
    starts at 0); a rank in the ``+Inf`` bucket gives the highest finite bound.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for upper in bounds:
        count = buckets[upper]
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


# -- the two runs ----------------------------------------------------------------------


def new_namespace() -> str:
    return f"bp-bench-{secrets.token_hex(3)}"


def wait_pods_gone(core: client.CoreV1Api, namespace: str, timeout: float = 120) -> None:
    def gone() -> bool:
        return not core.list_namespaced_pod(namespace).items

    support.wait_for(f"the pods of {namespace} gone", gone, timeout=timeout)


def release_keys(directory: Path) -> Keys:
    """A fresh release key directory, as the chart makes one at install."""
    keys = Keys(new_key())
    write_keys(directory, keys)
    return keys


def operator_env(keys_dir: Path, namespace: str, network_policy: bool) -> dict[str, str]:
    """The operator's settings the chart gives it: the release key directory,
    and whom each pool's NetworkPolicy admits (or none, with the policy off)."""
    env = {"BRIDGEPOOL_OPERATOR_WORKER_KEYS_DIR": str(keys_dir)}
    if not network_policy:
        return env | {"BRIDGEPOOL_OPERATOR_NETWORK_POLICY": "false"}
    return env | {
        "BRIDGEPOOL_OPERATOR_RELEASE_NAMESPACE": namespace,
        "BRIDGEPOOL_OPERATOR_ROUTER_SELECTOR": POLICY_PEERS + "router",
        "BRIDGEPOOL_OPERATOR_OPERATOR_SELECTOR": POLICY_PEERS + "operator",
    }


@contextmanager
def running_operator(
    cluster: support.Cluster,
    pools: components.Pools,
    log: Path,
    interval: float,
    env: Mapping[str, str],
) -> Iterator[components.Process]:
    """The operator serving the pools' namespace; on the way out the pools are
    deleted while it runs (so kopf lifts its finalizer), then it gets SIGTERM."""

    def start() -> components.Process:
        proc = components.operator_process(
            cluster, [pools.namespace], log, interval_seconds=interval, env=env
        )
        proc.start(timeout=60)
        return proc

    proc = start()
    try:
        yield proc
    except KeyboardInterrupt:
        # Ctrl-C reached the operator too (one process group): let it finish
        # exiting, and start another to lift kopf's finalizers.
        proc.stop()
        proc = start()
        raise
    finally:
        try:
            if not proc.running:  # it died on its own
                proc = start()
            pools.delete_all(timeout=120)
        finally:
            pools.release()
            proc.stop()
        progress("  BridgePools: deleted; waiting for their pods to go")
        wait_pods_gone(pools.core, pools.namespace)


def bench_pools(
    cluster: support.Cluster,
    args: argparse.Namespace,
    names: Sequence[str],
    log: Path,
    keys_dir: Path,
) -> tuple[dict[str, list[float]], list[Window]]:
    with (
        cluster.api_client() as api,
        support.fresh_namespace(client.CoreV1Api(api), new_namespace()) as namespace,
    ):
        progress(f"{len(names)} BridgePools in namespace {namespace}; operator log: {log}")
        pools = components.Pools(api, namespace)
        subject = pool_subject(pools, args.image, pool_spec(args.health_interval))
        env = operator_env(keys_dir, namespace, args.network_policy)
        with (
            running_operator(cluster, pools, log, args.interval, env) as operator,
            watching(cluster, namespace, subject) as books,
        ):
            url = components.operator_metrics_url(operator)
            scrapes: dict[str, Scrape] = {}

            def operator_alive() -> None:
                if not operator.running:
                    raise BenchmarkFailed(f"the operator exited; its log: {log}")

            def checkpoint(stage: str) -> None:
                operator_alive()
                scrapes[stage] = scrape(url)
                progress(f"  BridgePools: {stage}")

            results = measure(
                subject,
                books,
                names,
                timeout=_timeout(len(names)),
                steady_seconds=args.steady,
                checkpoint=checkpoint,
                check=operator_alive,
            )
            windows = [
                Window.between(window, scrapes[start], scrapes[end], books)
                for window, start, end in (
                    ("create", "start", "created"),
                    ("steady", "created", "steady"),
                    ("rollout", "steady", "rolled"),
                    ("delete", "rolled", "deleted"),
                )
            ]
            _warn_relists(books)
    return results, windows


def bench_deployments(
    cluster: support.Cluster, args: argparse.Namespace, names: Sequence[str], release: Keys
) -> dict[str, list[float]]:
    with (
        cluster.api_client() as api,
        support.fresh_namespace(client.CoreV1Api(api), new_namespace()) as namespace,
    ):
        progress(f"{len(names)} Deployments in namespace {namespace}")
        spec = pool_spec(args.health_interval)
        subject = deployment_subject(api, namespace, args.image, spec, release)
        with watching(cluster, namespace, subject) as books:

            def checkpoint(stage: str) -> None:
                progress(f"  Deployments: {stage}")

            results = measure(
                subject, books, names, timeout=_timeout(len(names)), checkpoint=checkpoint
            )
            _warn_relists(books)
        wait_pods_gone(client.CoreV1Api(api), namespace)
        progress("  Deployments: pods gone")
    return results


def _timeout(count: int) -> float:
    return max(180.0, 4.0 * count)


def _warn_relists(books: Books) -> None:
    relists = books.pods.watcher.relists + books.objects.watcher.relists
    if relists:
        progress(f"  note: the watches listed afresh {relists} times; some times may be late")


# -- output ---------------------------------------------------------------------------

ROWS = (
    ("create -> first pod seen", "first_pod"),
    ("create -> pod Ready", "pod_ready"),
    ("create -> status all ready", "status_ready"),
    ("template -> first new pod", "new_pod"),
    ("template -> rollout complete", "rolled"),
    ("delete -> object gone", "gone"),
    ("pods created per object", "pods"),
)


def progress(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:4.0f}s] {message}", file=sys.stderr, flush=True)


def nearest_rank(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def print_comparison(
    count: int, pools: Mapping[str, list[float]], deployments: Mapping[str, list[float]]
) -> None:
    print(f"\nseconds from the API call, {count} of each, {REPLICAS} worker each")
    print("(pods created per object: over the whole run; 2 = one per revision, more = churn)")
    print(f"{'':30}{'':6}{'BridgePool':>11}{'Deployment':>12}{'ratio':>8}")
    for label, key in ROWS:
        for stat, p in (("p50", 50.0), ("p90", 90.0), ("max", 100.0)):
            ours, theirs = nearest_rank(pools[key], p), nearest_rank(deployments[key], p)
            ratio = ours / theirs if theirs > 0 else math.nan
            print(f"{label:30}{stat:6}{ours:11.2f}{theirs:12.2f}{ratio:8.2f}")
            label = ""
    print("ratio = BridgePool / Deployment; p50/p90 nearest-rank over the objects")


def print_windows(windows: Sequence[Window]) -> None:
    print(
        f"\noperator reconcile passes ({RECONCILE}; p50/p90/p99 bucket-interpolated"
        " as histogram_quantile does, mean exact from _sum/_count)"
    )
    head = ("window", "secs", "passes", "/s", "mean ms", "p50 ms", "p90 ms", "p99 ms")
    tail = ("CPU %", "pod acts", "not ok", "obj upd")
    print(f"{head[0]:9}" + "".join(f"{h:>9}" for h in head[1:] + tail))
    for w in windows:
        passes = max(w.passes, 1.0)
        quantiles = [histogram_quantile(q, w.buckets) * 1000 for q in QUANTILES]
        cells = [w.seconds, w.passes, w.passes / w.seconds, w.pass_seconds / passes * 1000]
        cells += [*quantiles, w.cpu_seconds / w.seconds * 100]
        counts = [w.pod_actions, w.not_success, w.object_updates]
        print(
            f"{w.name:9}"
            + "".join(f"{c:9.1f}" for c in cells)
            + "".join(f"{c:9.0f}" for c in counts)
        )
    print(
        "CPU % = the operator process (100 = one core); pod acts = pods created, drained or"
        " deleted; not ok = passes not 'success'; obj upd = pool updates the watch saw"
    )
    for w in windows:
        print(f"{w.name} passes per bucket (le: count): {_bucket_counts(w.buckets)}")


def _bucket_counts(buckets: Mapping[float, float]) -> str:
    parts: list[str] = []
    below = 0.0
    for upper in sorted(buckets):
        parts.append(f"{upper:g}: {buckets[upper] - below:.0f}")
        below = buckets[upper]
    return ", ".join(parts)


# -- the run ------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--pools", type=int, default=50, help="pools, and Deployments (50)")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path(os.environ.get("BRIDGEPOOL_E2E_KUBECONFIG") or support.LOCAL_KUBECONFIG),
        help="the cluster (BRIDGEPOOL_E2E_KUBECONFIG, else the local cluster's)",
    )
    parser.add_argument("--image", default=support.WORKER_IMAGE, help="the worker image")
    parser.add_argument(
        "--steady", type=float, default=30.0, help="steady-state window, seconds (30)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="the operator's pass interval, seconds (5, its own default)",
    )
    parser.add_argument(
        "--health-interval",
        type=int,
        metavar="SECONDS",
        help="the pools' spec.health.intervalSeconds (default: the product's, 30)",
    )
    parser.add_argument(
        "--network-policy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the operator keeps a NetworkPolicy per pool, as the chart's default has it "
        "(default on; off for a cluster that keeps this machine from pods behind one)",
    )
    return parser.parse_args()


def connect(kubeconfig: Path) -> support.Cluster:
    if not kubeconfig.is_file():
        raise BenchmarkFailed(f"no kubeconfig at {kubeconfig}")
    cluster = support.Cluster(
        flavour="kubeconfig",
        kubeconfig=kubeconfig,
        direct_http=True,
        load_image=lambda image, dockerfile: None,  # the image must be there already
    )
    with cluster.api_client() as api:
        try:
            version: Any = client.VersionApi(api).get_code(_request_timeout=10)
        except Exception as exc:
            raise BenchmarkFailed(f"the API server of {kubeconfig} does not answer: {exc}") from exc
    progress(f"cluster: Kubernetes {version.git_version} ({kubeconfig})")
    return cluster


def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    cluster = connect(args.kubeconfig)
    components.install_crd(cluster)
    workdir = Path(tempfile.mkdtemp(prefix="bp-bench-"))
    log = workdir / "operator.log"
    keys_dir = workdir / "release-keys"  # the operator's --worker-keys-dir
    release = release_keys(keys_dir)
    pool_names = [f"pool-{i:03d}" for i in range(args.pools)]
    pools, windows = bench_pools(cluster, args, pool_names, log, keys_dir)
    dep_names = [f"dep-{i:03d}" for i in range(args.pools)]
    deployments = bench_deployments(cluster, args, dep_names, release)
    print_comparison(args.pools, pools, deployments)
    print_windows(windows)
    print(
        f"\noperator interval {args.interval:g}s, steady window {args.steady:g}s,"
        f" health interval {args.health_interval or 'default'},"
        f" network policy {'on' if args.network_policy else 'off'};"
        f" total run {time.monotonic() - started:.0f}s; operator log {log}"
    )


def main() -> None:
    args = parse_args()
    try:
        run(args)
    except KeyboardInterrupt:
        progress("interrupted; the pools, the operator and the namespaces were cleaned up")
        raise SystemExit(130) from None
    except (BenchmarkFailed, AssertionError) as exc:  # support's waits raise AssertionError
        progress(f"benchmark failed: {exc}")
        if isinstance(exc.__context__, BenchmarkFailed | AssertionError):  # cleanup failed too
            progress(f"  while cleaning up after: {exc.__context__}")
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

"""Workers closed to strangers: a worker answers its probes to anyone, and
everything else only to a caller that sends its pool's key; and, where the
pool's NetworkPolicy is on, nothing but the release's router and operator and
the pool's own workers reaches it at all.

The suite's release of the chart (conftest.py's ``installed``: NetworkPolicy
on, enforced by kube-router on the local cluster) serves a namespace of this
module's own, with two pools: ``guarded`` at the default (the operator keeps a
NetworkPolicy around its workers) and ``open`` with
``spec.networkPolicy.enabled: false``. Both load the example handlers
(``incr``: a session's counter). Strangers are pods that are not workers: one
in the pools' namespace, one in a namespace the release does not watch. Each
tries every endpoint of a worker of each pool; the answers seen go into the
e2e summary as a matrix. The router still serves both pools, the operator
still moves a session through a rollout and a ``kubectl delete pod`` of its
worker, and the release's scrape token opens a worker's ``/metrics`` and
nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kubernetes import client

from bridgepool import labels
from bridgepool.credentials import Keys, bearer, new_key, pool_keys
from bridgepool.names import PoolRef
from bridgepool.protocol import HEADER_WORKER
from bridgepool.workers import worker_url
from e2e import support
from e2e.components import (
    CallLog,
    Installed,
    Pools,
    Recorder,
    calling,
    create_handlers_configmap,
    pool_manifest,
    settled,
    with_handlers,
)
from e2e.support import Cluster, HttpAnswer, HttpClient, HttpRequest, Unreachable

pytestmark = pytest.mark.e2e

GUARDED = "guarded"  # the pool with its NetworkPolicy (the default)
OPEN = "open"  # the pool with spec.networkPolicy.enabled: false
REPLICAS = {GUARDED: 2, OPEN: 1}  # two: a session of the guarded pool has somewhere to move
PING = {"command": "ping", "args": {}}
INCR = {"command": "incr", "args": {}}
SESSION = "stranger-session"
# Every endpoint of a worker: (method, path, JSON body). The probes answer
# anyone; the others only a caller with the pool's key.
PROBES = [("GET", "/healthz", None), ("GET", "/readyz", None)]
KEYED_ENDPOINTS = [
    ("POST", "/v1/execute", {"id": "1", **PING}),
    ("GET", "/v1/stats", None),
    ("GET", "/v1/sessions", None),
    ("DELETE", f"/v1/sessions/{SESSION}", None),
    ("POST", f"/v1/sessions/{SESSION}/export", {}),
    ("POST", f"/v1/sessions/{SESSION}/import", {}),
    ("POST", f"/v1/sessions/{SESSION}/commit", {}),
    ("POST", f"/v1/sessions/{SESSION}/abort", {}),
    ("POST", f"/v1/sessions/{SESSION}/activate", {}),
    ("GET", "/v1/moves", None),
    ("GET", "/metrics", None),
]
ENDPOINTS = PROBES + KEYED_ENDPOINTS
# How long a stranger waits for an answer. A connection the guarded pool's
# policy refuses is mostly refused at once (kube-router rejects it), but the
# kernel sends only a few rejections to one address at a time, so in a burst
# of calls some get no answer at all: "no answer" is either.
STRANGER_TIMEOUT = 3.0


@dataclass
class AccessPools:
    """The two pools, their namespace, and the strangers' pods."""

    installed: Installed
    pools: Pools
    uids: dict[str, str]
    strangers: dict[str, HttpClient]  # what the stranger is -> calls from its pod

    @property
    def cluster(self) -> Cluster:
        return self.installed.cluster

    @property
    def namespace(self) -> str:
        return self.pools.namespace

    def worker(self, pool: str) -> Any:
        """A worker pod of ``pool``, the oldest."""
        return self.pools.pods(pool)[0]

    def api(self, pool: str) -> str:
        return self.installed.api(pool, self.namespace)


def access_pool(name: str, policy: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": REPLICAS[name]}
    if not policy:
        spec["networkPolicy"] = {"enabled": False}
    return with_handlers(pool_manifest(name, support.WORKER_IMAGE, spec=spec))


@pytest.fixture(scope="module")
def access_pools(
    installed: Installed,
    core: client.CoreV1Api,
    worker_image: str,
    e2e_timings: dict[str, str],
) -> Iterator[AccessPools]:
    """Both pools Ready and seen by the router, and a stranger pod in their
    namespace and in one the release does not watch."""
    cluster, namespace = installed.cluster, installed.access
    started = time.monotonic()
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:8]}"
    with contextlib.ExitStack() as stack:
        stack.enter_context(support.fresh_namespace(core, elsewhere))
        api = stack.enter_context(cluster.api_client())
        pools = Pools(api, namespace)
        create_handlers_configmap(cluster, namespace)
        uids = {
            name: pools.create(access_pool(name, policy=name == GUARDED))["metadata"]["uid"]
            for name in (GUARDED, OPEN)
        }
        # The pools go while the operator runs (it lifts kopf's finalizer).
        stack.callback(pools.delete_all, timeout=120)
        # Strangers: pods that are not workers, here and in another namespace.
        strangers: dict[str, HttpClient] = {}
        for where, ns in (("pod beside the workers", namespace), ("pod elsewhere", elsewhere)):
            support.start_client_pod(core, ns, worker_image, "stranger")
            strangers[where] = HttpClient(cluster, ns, "stranger")
        access = AccessPools(installed, pools, uids, strangers)
        for name in (GUARDED, OPEN):
            replicas = REPLICAS[name]
            pools.wait(name, "ready", functools.partial(settled, replicas=replicas), timeout=180)
            workers = {p.metadata.name for p in pools.pods(name)}
            support.wait_for(
                f"the router to see {name}'s workers",
                functools.partial(installed.router_sees, access.api(name), workers),
            )
        e2e_timings["worker access: two pools Ready and seen by the router"] = (
            f"{time.monotonic() - started:.1f} s"
        )
        yield access


# --------------------------------------------------------------------------
# Calls, and what they answered
# --------------------------------------------------------------------------


def outcome(answer: HttpAnswer | Unreachable) -> str:
    """An answer in a word or two: ``401 unauthenticated``, ``200``, ``no answer (timeout)``."""
    if isinstance(answer, Unreachable):
        return f"no answer ({answer.reason})"
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    return f"{answer.status} {error['type']}" if isinstance(error, dict) else str(answer.status)


def call_all(
    http: HttpClient,
    worker: Any,
    endpoints: Sequence[tuple[str, str, Any]],
    headers: dict[str, str] | None = None,
    timeout: float = STRANGER_TIMEOUT,
) -> list[tuple[str, HttpAnswer | Unreachable]]:
    """Each endpoint of ``worker`` once, all at once: ("METHOD path", answer)."""
    base = worker_url(worker)
    calls = [HttpRequest(m, f"{base}{path}", body, headers or {}) for m, path, body in endpoints]
    answers = http.request_all(calls, timeout=timeout)
    return [(f"{m} {path}", a) for (m, path, _), a in zip(endpoints, answers, strict=True)]


def refused_by_the_worker(answer: HttpAnswer | Unreachable, status: int, type_: str) -> bool:
    """The worker answered with the structured error ``type_`` and ``status``."""
    if not isinstance(answer, HttpAnswer) or answer.status != status:
        return False
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    return isinstance(error, dict) and error.get("type") == type_ and "category" in error


def record_all(
    recorder: Recorder,
    prefix: str,
    seen: list[tuple[str, HttpAnswer | Unreachable]],
    *,
    each: str | None = None,
) -> None:
    """Each answer under its endpoint; or, with ``each``, under that one name
    (the same outcome in a row is then one entry, ``(xN)``)."""
    for case, answer in seen:
        recorder.record(f"{prefix}{each or case}", outcome(answer), answer)


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------


def owned_by(obj: Any, pool: str, uid: str) -> bool:
    refs = obj.metadata.owner_references or []
    return [(r.kind, r.name, r.uid, r.controller) for r in refs] == [(labels.KIND, pool, uid, True)]


def test_the_operator_keeps_each_pools_keys_and_the_policy_where_it_is_on(
    access_pools: AccessPools, e2e_timings: dict[str, str]
) -> None:
    """Beside each pool a Secret of its keys (its own key, derived from the
    release key, and the release's scrape token), which its workers mount;
    beside the guarded pool only, its NetworkPolicy; each owned by its pool."""
    access, cluster = access_pools, access_pools.cluster
    recorder = Recorder("worker access", "objects beside the pools", e2e_timings)
    release = access.installed.release
    core = client.CoreV1Api(access.pools.api)
    networking = client.NetworkingV1Api(access.pools.api)
    master = Keys(release.release_key())
    keys = {}
    for pool in (GUARDED, OPEN):
        secret: Any = core.read_namespaced_secret(labels.keys_secret_name(pool), access.namespace)
        assert owned_by(secret, pool, access.uids[pool]), secret.metadata.owner_references
        assert set(secret.data) == {"key", "scrape-token"}, set(secret.data)
        keys[pool] = cluster.worker_key(access.namespace, pool)
        assert keys[pool] == pool_keys(master, PoolRef(access.namespace, pool)).current
        token = cluster.secret_value(access.namespace, secret.metadata.name, "scrape-token")
        assert token == release.scrape_token()
        recorder.record(f"{pool}: Secret {secret.metadata.name}", "owned by the pool")
        # Each worker mounts it.
        for pod in access.pools.pods(pool):
            mounted = {v.secret.secret_name for v in pod.spec.volumes if v.secret is not None}
            assert labels.keys_secret_name(pool) in mounted, pod.spec.volumes
    assert keys[GUARDED] != keys[OPEN]

    policy: Any = networking.read_namespaced_network_policy(
        labels.network_policy_name(GUARDED), access.namespace
    )
    assert owned_by(policy, GUARDED, access.uids[GUARDED]), policy.metadata.owner_references
    assert policy.spec.policy_types == ["Ingress"]
    assert policy.spec.pod_selector.match_labels[labels.LABEL_POOL] == GUARDED
    recorder.record(f"{GUARDED}: NetworkPolicy {policy.metadata.name}", "owned by the pool")
    with pytest.raises(client.ApiException) as missing:
        networking.read_namespaced_network_policy(
            labels.network_policy_name(OPEN), access.namespace
        )
    assert missing.value.status == 404
    recorder.record(f"{OPEN}: NetworkPolicy {labels.network_policy_name(OPEN)}", 404)


def test_a_stranger_is_refused_by_the_network_or_by_the_worker(
    access_pools: AccessPools, e2e_timings: dict[str, str]
) -> None:
    """A pod that is not a worker, in the pools' namespace or another: the
    guarded pool's worker gives it no answer at all, with or without the key;
    the open pool's worker answers its probes and refuses every other
    endpoint with 401 ``unauthenticated``, also with a wrong key and with the
    guarded pool's key, and takes its own pool's key."""
    access, cluster = access_pools, access_pools.cluster
    guarded_worker, open_worker = access.worker(GUARDED), access.worker(OPEN)
    support.wait_for(
        f"kube-router to enforce the policy on {guarded_worker.metadata.name}",
        functools.partial(cluster.policy_enforced_on, guarded_worker),
    )
    keys = {pool: cluster.worker_headers(access.namespace, pool) for pool in (GUARDED, OPEN)}
    for stranger, http in access.strangers.items():
        # The guarded pool: the network refuses everything, whatever the key.
        recorder = Recorder("worker access", f"{stranger} -> {GUARDED} worker", e2e_timings)
        seen = call_all(http, guarded_worker, ENDPOINTS)
        record_all(recorder, "", seen)
        assert all(isinstance(a, Unreachable) for _, a in seen), [
            (case, outcome(a)) for case, a in seen
        ]
        seen = call_all(http, guarded_worker, [("GET", "/v1/stats", None)], keys[GUARDED])
        record_all(recorder, "with its key: ", seen)
        assert all(isinstance(a, Unreachable) for _, a in seen), seen

        # The open pool: the network lets it through; the worker asks for the key.
        recorder = Recorder("worker access", f"{stranger} -> {OPEN} worker", e2e_timings)
        seen = call_all(http, open_worker, ENDPOINTS)
        record_all(recorder, "", seen)
        for case, answer in seen:
            if case in {f"{m} {p}" for m, p, _ in PROBES}:
                assert isinstance(answer, HttpAnswer) and answer.status == 200, (case, answer)
            else:
                assert refused_by_the_worker(answer, 401, "unauthenticated"), (case, answer)
        wrong = {"Authorization": bearer(new_key())}
        for what, headers in (("a wrong key", wrong), (f"{GUARDED}'s key", keys[GUARDED])):
            seen = call_all(http, open_worker, KEYED_ENDPOINTS, headers)
            record_all(recorder, f"with {what}: ", seen, each="each endpoint but the probes")
            assert all(refused_by_the_worker(a, 401, "unauthenticated") for _, a in seen), [
                (case, outcome(a)) for case, a in seen
            ]
        # Its own pool's key opens it: what refused the others was the key.
        seen = call_all(http, open_worker, [("GET", "/v1/stats", None)], keys[OPEN])
        record_all(recorder, "with its key: ", seen)
        ((_, answer),) = seen
        assert isinstance(answer, HttpAnswer) and answer.status == 200, answer


def test_the_router_still_serves_both_pools(
    access_pools: AccessPools, e2e_timings: dict[str, str]
) -> None:
    """Through the router (namespaced route, bearer token): a call and a
    session on each pool, answered by its own workers; and the operator
    still reads every worker's stats."""
    access = access_pools
    recorder = Recorder("worker access", "router", e2e_timings)
    with access.installed.http() as http:
        for pool in (GUARDED, OPEN):
            workers = {p.metadata.name for p in access.pools.pods(pool)}
            resp = http.post(f"{access.api(pool)}/execute", json=PING)
            recorder.record(f"{pool} execute", resp.status_code, resp.text)
            assert resp.status_code == 200, resp.text
            assert resp.headers[HEADER_WORKER] in workers
            session = f"{access.api(pool)}/sessions/router-check"
            counts = []
            for _ in range(2):
                resp = http.post(f"{session}/execute", json=INCR)
                assert resp.status_code == 200, resp.text
                counts.append(resp.json()["result"]["count"])
            recorder.record(f"{pool} session incr", resp.status_code, counts)
            assert counts == [1, 2]
            assert http.delete(session).status_code == 200
            status = access.pools.get(pool)["status"]
            states = [w["state"] for w in status["workers"]]
            recorder.record(f"{pool} operator's view of the workers", states)
            assert states == ["ready"] * REPLICAS[pool], status


def counts_continue(log: CallLog) -> list[int]:
    """The session's counter as the calls saw it; it must go up by one each time."""
    counts = [int(result["count"]) for result, _ in log.results]
    assert counts == list(range(1, len(counts) + 1)), counts
    return counts


def test_the_operator_still_moves_a_session_through_a_rollout_and_a_pod_deletion(
    access_pools: AccessPools, core: client.CoreV1Api, e2e_timings: dict[str, str]
) -> None:
    """A session with a counter on the guarded pool, called without pause:
    a rollout (a new pod template) and then a graceful ``kubectl delete pod``
    of the worker holding it move it to another worker with its state (the
    workers hand it over to each other through the pool's NetworkPolicy, each
    proving the pool's key): no call fails, none is rebound, and the counter
    goes on."""
    access, pools = access_pools, access_pools.pools
    recorder = Recorder("worker access", "moves on the guarded pool", e2e_timings)
    url = f"{access.api(GUARDED)}/sessions/mover/execute"
    auth = access.cluster.auth_headers()
    before = pools.get(GUARDED)
    first = {p.metadata.name for p in pools.pods(GUARDED)}

    with calling(url, INCR, period=0.1, headers=auth) as log:
        support.wait_for("calls flowing", lambda: log.ok > 5)
        template = before["spec"]["template"]
        template.setdefault("metadata", {}).setdefault("labels", {})["rollout"] = "second"
        started = time.monotonic()
        patched = pools.patch_spec(GUARDED, {"template": template})
        pools.wait(
            GUARDED,
            "rollout complete",
            lambda p: (
                settled(p, REPLICAS[GUARDED])
                and p["status"]["observedGeneration"] == patched["metadata"]["generation"]
            ),
            timeout=180,
        )
        support.wait_for(
            "the old workers deleted",
            lambda: {p.metadata.name for p in pools.pods(GUARDED)}.isdisjoint(first),
            timeout=120,
        )
        rolled = time.monotonic() - started
        calls = log.ok
        support.wait_for("calls after the rollout", lambda: log.ok > calls + 5)
    counts = counts_continue(log)
    recorder.record("rollout", f"{len(log.failures)} failed calls", log.failures[:3])
    assert log.failures == [], log.failures[:5]
    holder = log.results[-1][1]
    assert holder not in first and holder in {p.metadata.name for p in pools.pods(GUARDED)}
    recorder.record("rollout", f"counter 1..{counts[-1]}, now on a new worker")

    with calling(url, INCR, period=0.1, headers=auth) as log:
        support.wait_for("calls flowing", lambda: log.ok > 5)
        holder = log.results[-1][1]
        # Its last words, for a failure's report: the pod and its log go with it.
        holder_log = support.PodLog(core, access.namespace, holder)
        started = time.monotonic()
        access.cluster.kubectl(
            "-n", access.namespace, "delete", "pod", holder, "--wait=false"
        )  # fmt: skip
        support.wait_for_pod_gone(core, access.namespace, holder, timeout=120)
        deleted = time.monotonic() - started
        calls = log.ok
        support.wait_for("calls after the deletion", lambda: log.ok > calls + 5)
    recorder.record("kubectl delete pod", f"{len(log.failures)} failed calls", log.failures[:3])
    if log.failures:
        print(f"-- {holder}'s log:", *holder_log.lines, sep="\n")
    assert log.failures == [], log.failures[:5]
    # The counter went on from where the rollout left it, on another worker.
    later = [int(result["count"]) for result, _ in log.results]
    assert later == list(range(counts[-1] + 1, counts[-1] + 1 + len(later))), later
    assert log.results[-1][1] != holder
    recorder.record("kubectl delete pod", f"counter {later[0]}..{later[-1]}, moved off {holder}")
    e2e_timings["worker access: rollout of the guarded pool under a session's calls"] = (
        f"{rolled:.1f} s"
    )
    e2e_timings["worker access: kubectl delete pod of the session's worker -> pod gone"] = (
        f"{deleted:.1f} s"
    )
    pools.wait(GUARDED, "ready again", lambda p: settled(p, REPLICAS[GUARDED]))


def test_the_scrape_token_opens_metrics_and_nothing_else(
    access_pools: AccessPools, e2e_timings: dict[str, str]
) -> None:
    """From this machine (the node: its traffic passes the guarded pool's
    NetworkPolicy, as the kubelet's probes do), the release's scrape token
    opens a worker's ``GET /metrics`` and is refused elsewhere with 403;
    without it, ``/metrics`` is 401."""
    access = access_pools
    recorder = Recorder("worker access", "scrape token from the node", e2e_timings)
    token = {"Authorization": bearer(access.installed.release.scrape_token())}
    for pool in (GUARDED, OPEN):
        base = worker_url(access.worker(pool))
        with httpx.Client(trust_env=False, timeout=10) as http:
            metrics = http.get(f"{base}/metrics", headers=token)
            recorder.record(f"{pool} GET /metrics", metrics.status_code)
            assert metrics.status_code == 200, metrics.text[:300]
            assert "bridgepool_worker_" in metrics.text
            for method, path, body in KEYED_ENDPOINTS[:3]:
                resp = http.request(method, f"{base}{path}", json=body, headers=token)
                error = resp.json()["error"]
                recorder.record(f"{pool} {method} {path}", f"{resp.status_code} {error['type']}")
                assert resp.status_code == 403 and error["type"] == "forbidden", resp.text
            resp = http.get(f"{base}/metrics")
            error = resp.json()["error"]
            recorder.record(f"{pool} GET /metrics, no token", f"{resp.status_code} {error['type']}")
            assert resp.status_code == 401 and error["type"] == "unauthenticated", resp.text

"""What guards a pool's workers: the Secret of the pool's keys and its
NetworkPolicy, as built, and as the operator writes them (once per change, and
before it makes worker pods), against an in-process stand-in for the API
server."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import kopf
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubernetes_asyncio import client as k8s

from bridgepool.credentials import Keys, PoolKeys, derive_pool_key, new_key, read_keys, write_keys
from bridgepool.names import PoolRef as PoolName
from bridgepool.spec import BridgePoolSpec
from bridgepool_operator.access import AccessLedger, PoolAccess, policy_peers, wanted_access
from bridgepool_operator.actions import keep_access
from bridgepool_operator.config import OperatorConfig
from bridgepool_operator.loop import KubernetesExecutor
from bridgepool_operator.pods import (
    PolicyPeers,
    PoolRef,
    build_keys_secret,
    build_network_policy,
    build_worker_pod,
    revision_of,
)
from bridgepool_operator.runtime import Runtime
from bridgepool_planner.passes import PassResult, run_pass

POOL = PoolRef(name="web", namespace="team-a", uid="u1")
OWNER = {
    "apiVersion": "bridgepool.io/v1alpha1",
    "kind": "BridgePool",
    "name": "web",
    "uid": "u1",
    "controller": True,
    "blockOwnerDeletion": True,
}
OURS = {"bridgepool.io/pool": "web", "app.kubernetes.io/managed-by": "bridgepool-operator"}
ROUTER = {"app.kubernetes.io/instance": "bp", "app.kubernetes.io/component": "router"}
OPERATOR = {"app.kubernetes.io/instance": "bp", "app.kubernetes.io/component": "operator"}
PROMETHEUS = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
PEERS = PolicyPeers("bridgepool-system", ROUTER, OPERATOR, (PROMETHEUS,))
TEMPLATE = {"spec": {"containers": [{"name": "worker", "image": "w:1"}]}}


def spec(**fields: Any) -> BridgePoolSpec:
    return BridgePoolSpec.model_validate({"template": TEMPLATE, **fields})


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


# -- the objects -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "files"),
    [
        pytest.param(Keys("k" * 32), {"key": "k" * 32}, id="a key"),
        pytest.param(
            Keys("k" * 32, previous="p" * 32, scrape="s" * 32),
            {"key": "k" * 32, "previous": "p" * 32, "scrape-token": "s" * 32},
            id="mid-rotation, with a scrape token",
        ),
        pytest.param(
            Keys("k" * 32, scrape="s" * 32),
            {"key": "k" * 32, "scrape-token": "s" * 32},
            id="a scrape token",
        ),
    ],
)
def test_the_keys_secret_is_a_key_directory(keys: Keys, files: dict[str, str]) -> None:
    secret = build_keys_secret(POOL, keys)
    assert secret["metadata"] == {
        "name": "web-bridgepool-keys",
        "namespace": "team-a",
        "labels": OURS,
        "ownerReferences": [OWNER],
    }
    assert secret["type"] == "Opaque"
    assert decoded(secret) == files


def test_the_secret_holds_the_pools_key_and_never_the_release_key(release_keys: PoolKeys) -> None:
    master = release_keys.master.keys()
    access = wanted_access(POOL, release_keys.of(PoolName("team-a", "web")), spec(), None)
    files = decoded(access.secret)
    assert files == {"key": derive_pool_key(master.current, "team-a", "web")}
    assert master.current not in json.dumps(access.secret)


def test_the_policy_lets_in_the_router_the_operator_the_pools_workers_and_the_scrape() -> None:
    policy = build_network_policy(POOL, PEERS)
    assert policy["apiVersion"] == "networking.k8s.io/v1"
    assert policy["metadata"] == {
        "name": "web-bridgepool-workers",
        "namespace": "team-a",
        "labels": OURS,
        "ownerReferences": [OWNER],
    }
    release = {"matchLabels": {"kubernetes.io/metadata.name": "bridgepool-system"}}
    assert policy["spec"] == {
        "podSelector": {"matchLabels": OURS},
        "policyTypes": ["Ingress"],
        # One rule, no ports: every port of the worker, from these only.
        "ingress": [
            {
                "from": [
                    {"namespaceSelector": release, "podSelector": {"matchLabels": ROUTER}},
                    {"namespaceSelector": release, "podSelector": {"matchLabels": OPERATOR}},
                    {"podSelector": {"matchLabels": OURS}},
                    PROMETHEUS,
                ]
            }
        ],
    }


def test_the_policy_selects_exactly_the_pools_worker_pods() -> None:
    pod = build_worker_pod(POOL, spec(), revision_of(spec()))
    selector = build_network_policy(POOL, PEERS)["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()
    other = build_worker_pod(replace(POOL, name="api"), spec(), revision_of(spec()))
    assert not selector.items() <= other["metadata"]["labels"].items()


@pytest.mark.parametrize(
    ("operator_on", "pool_on", "policy"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_a_policy_only_when_the_operator_and_the_pool_both_want_one(
    operator_on: bool, pool_on: bool, policy: bool
) -> None:
    config = OperatorConfig(
        network_policy=operator_on,
        release_namespace="bridgepool-system",
        router_selector=ROUTER,
        operator_selector=OPERATOR,
    )
    access = wanted_access(
        POOL, Keys("k" * 32), spec(networkPolicy={"enabled": pool_on}), policy_peers(config)
    )
    assert (access.policy is not None) == policy


# -- when they are written ---------------------------------------------------------------


def test_the_ledger_writes_once_per_change_and_again_after_the_resync() -> None:
    ledger = AccessLedger(resync_seconds=600)
    pool = ("team-a", "web")
    assert ledger.due(pool, "a", now=0) and not ledger.has_keys(pool)  # a new operator writes
    ledger.written(pool, "a", now=0)
    assert not ledger.due(pool, "a", now=599)
    assert ledger.due(pool, "b", now=1)  # changed
    assert ledger.due(pool, "a", now=600)  # in case someone deleted them
    assert ledger.has_keys(pool)
    assert ledger.failed(pool, "403") and not ledger.failed(pool, "403")  # told once
    assert ledger.failed(pool, "409")
    ledger.written(pool, "b", now=2)
    assert ledger.failed(pool, "403")  # a failure after a success is news again
    ledger.forget(pool)
    assert ledger.due(pool, "b", now=3) and not ledger.has_keys(pool)


def test_the_fingerprint_follows_every_word_of_the_objects() -> None:
    base = wanted_access(POOL, Keys("k" * 32), spec(), PEERS)
    assert base.fingerprint == wanted_access(POOL, Keys("k" * 32), spec(), PEERS).fingerprint
    changes = [
        wanted_access(POOL, Keys("k" * 32, previous="p" * 32), spec(), PEERS),
        wanted_access(POOL, Keys("k" * 32), spec(), replace(PEERS, scrape_from=())),
        wanted_access(replace(POOL, uid="u2"), Keys("k" * 32), spec(), PEERS),
        PoolAccess(base.secret, None),
    ]
    assert len({base.fingerprint, *(c.fingerprint for c in changes)}) == 5


# -- writing them: an in-process API server ------------------------------------------------


class FakeApi:
    """The API server as far as a pass uses it: objects kept by (plural,
    namespace, name), created (409 when there), read, replaced, patched and
    deleted (404 when not); every request logged. ``refuse`` names plurals
    whose writes are forbidden."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.refuse: set[str] = set()
        self._versions = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application()
        collection = "/{prefix:.+}/namespaces/{namespace}/{plural}"
        app.router.add_post(collection, self.create)
        app.router.add_route("*", collection + "/{name}", self.one)
        app.router.add_route("*", collection + "/{name}/{subresource}", self.one)
        return app

    @staticmethod
    def status(code: int, reason: str) -> web.Response:
        body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
        return web.json_response({**body, "reason": reason, "message": reason}, status=code)

    def stored(self, obj: dict[str, Any]) -> web.Response:
        obj["metadata"]["resourceVersion"] = str(next(self._versions))
        return web.json_response(obj)

    async def create(self, request: web.Request) -> web.Response:
        plural, namespace = request.match_info["plural"], request.match_info["namespace"]
        self.requests.append(("create", plural))
        if plural in self.refuse:
            return self.status(403, "Forbidden")
        obj = await request.json()
        meta = obj["metadata"]
        meta.setdefault("name", meta.pop("generateName", "") + f"{next(self._versions):05d}")
        key = (plural, namespace, meta["name"])
        if key in self.objects:
            return self.status(409, "AlreadyExists")
        self.objects[key] = obj
        return self.stored(obj)

    async def one(self, request: web.Request) -> web.Response:
        info = request.match_info
        key = (info["plural"], info["namespace"], info["name"])
        verb = {"GET": "read", "PUT": "replace", "PATCH": "patch", "DELETE": "delete"}
        self.requests.append((verb[request.method], info["plural"]))
        if request.method != "GET" and info["plural"] in self.refuse:
            return self.status(403, "Forbidden")
        if key not in self.objects:
            return self.status(404, "NotFound")
        if request.method == "DELETE":
            del self.objects[key]
            return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success"})
        if request.method == "PUT":
            self.objects[key] = await request.json()
        elif request.method == "PATCH":
            self.objects[key] = merge_patch(self.objects[key], await request.json())
        return self.stored(self.objects[key])

    def writes(self) -> list[tuple[str, str]]:
        """The requests since the last call, and forget them."""
        done, self.requests = self.requests, []
        return done


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386, as the API server applies a merge patch: mappings merge,
    null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


Serve = Callable[[web.Application], Awaitable[TestServer]]


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


class Events(list[tuple[str, str, str]]):
    def __call__(self, _body: Any, /, *, type: str, reason: str, message: str) -> None:
        self.append((type, reason, message))


@asynccontextmanager
async def running(
    server: TestServer, config: OperatorConfig, keys: PoolKeys, events: Events
) -> AsyncIterator[Runtime]:
    configuration = k8s.Configuration(host=str(server.make_url("")).rstrip("/"))
    async with k8s.ApiClient(configuration) as client:
        yield Runtime(config, client, cast(Any, None), keys, post_event=events)


CONFIG = OperatorConfig(
    release_namespace="bridgepool-system", router_selector=ROUTER, operator_selector=OPERATOR
)


def pool_body(**fields: Any) -> kopf.Body:
    raw = {
        "apiVersion": "bridgepool.io/v1alpha1",
        "kind": "BridgePool",
        "metadata": {"name": "web", "namespace": "team-a", "uid": "u1", "generation": 1},
        "spec": {"template": TEMPLATE, **fields},
    }
    return kopf.Body(cast(kopf.RawBody, raw))


async def test_the_objects_are_written_once_per_change(
    aiohttp_server: Serve, api: FakeApi, release_keys: PoolKeys, key_dir: Path
) -> None:
    events = Events()
    server = await aiohttp_server(api.app())
    body = pool_body()
    async with running(server, CONFIG, release_keys, events) as runtime:
        assert await keep_access(runtime, body, spec())
        assert api.writes() == [("create", "secrets"), ("create", "networkpolicies")]
        assert await keep_access(runtime, body, spec())
        assert api.writes() == []  # nothing changed: not a request

        # A rotation of the release keys: the Secret gets the new key and the old one.
        release = read_keys(key_dir)
        write_keys(key_dir, replace(release, current=new_key(), previous=release.current))
        assert await keep_access(runtime, body, spec())
        assert api.writes() == [
            ("create", "secrets"),
            ("read", "secrets"),
            ("replace", "secrets"),
            ("create", "networkpolicies"),
            ("read", "networkpolicies"),  # the same: left as it is
        ]
        secret = api.objects[("secrets", "team-a", "web-bridgepool-keys")]
        assert set(decoded(secret)) == {"key", "previous", "scrape-token"}

        # The pool turns its policy off: the operator's goes.
        assert await keep_access(runtime, body, spec(networkPolicy={"enabled": False}))
        assert api.writes()[-2:] == [("read", "networkpolicies"), ("delete", "networkpolicies")]
        assert ("networkpolicies", "team-a", "web-bridgepool-workers") not in api.objects

    # A new operator writes once again, and only what differs.
    async with running(server, CONFIG, release_keys, events) as runtime:
        assert await keep_access(runtime, body, spec())
        assert api.writes() == [
            ("create", "secrets"),
            ("read", "secrets"),
            ("create", "networkpolicies"),
        ]
    assert events == []


async def test_a_failed_write_is_told_once_and_no_worker_waits_for_missing_keys(
    aiohttp_server: Serve, api: FakeApi, release_keys: PoolKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Secret cannot be written (the operator may not write Secrets): the
    pass goes on, says why on the pool, and makes no worker pod, which would wait
    for the Secret unstarted. Once it is written, the pods come."""
    events = Events()
    server = await aiohttp_server(api.app())
    body = pool_body(replicas=2)
    api.objects[("bridgepools", "team-a", "web")] = dict(body)
    api.refuse.add("secrets")
    async with running(server, CONFIG, release_keys, events) as runtime:
        for _ in range(2):
            await run_pass(KubernetesExecutor(runtime, body, {}), PassResult(), datetime.now(UTC))
        assert ("create", "pods") not in api.writes()
        ((kind, reason, message),) = events  # once, not once per pass
        assert (kind, reason) == ("Warning", "FailedWorkerAccess")
        assert message == (
            "the workers' keys or network policy not written: "
            "the API server answered 403 Forbidden: Forbidden"
        )

        api.refuse.clear()
        await run_pass(KubernetesExecutor(runtime, body, {}), PassResult(), datetime.now(UTC))
        writes = [w for w in api.writes() if w[0] == "create"]
        assert writes[:2] == [("create", "secrets"), ("create", "networkpolicies")]
        assert writes.count(("create", "pods")) == 2


async def test_an_object_the_operator_did_not_make_is_left_alone(
    aiohttp_server: Serve, api: FakeApi, release_keys: PoolKeys
) -> None:
    events = Events()
    server = await aiohttp_server(api.app())
    theirs = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-bridgepool-keys"}}
    api.objects[("secrets", "team-a", "web-bridgepool-keys")] = theirs
    async with running(server, CONFIG, release_keys, events) as runtime:
        assert not await keep_access(runtime, pool_body(), spec())
    assert ("replace", "secrets") not in api.writes()
    (event,) = events
    assert event[2].endswith(
        "ForeignObject: Secret team-a/web-bridgepool-keys exists and bridgepool-operator "
        "did not make it: delete or rename it"
    )


async def test_the_disruption_budget_follows_the_desired_size(
    aiohttp_server: Serve, api: FakeApi, release_keys: PoolKeys
) -> None:
    """Evictions leave desired - spec.disruptions.maxUnavailable ready workers;
    the budget is written when that number changes, not every pass, and the
    status says what it is."""
    server = await aiohttp_server(api.app())
    raw = dict(pool_body(minReplicas=3, maxReplicas=10))
    stored = ("bridgepools", "team-a", "web")
    api.objects[stored] = raw

    async def one_pass(runtime: Runtime) -> list[tuple[str, str]]:
        body = kopf.Body(cast(kopf.RawBody, api.objects[stored]))
        await run_pass(KubernetesExecutor(runtime, body, {}), PassResult(), datetime.now(UTC))
        return [w for w in api.writes() if w[1] == "poddisruptionbudgets"]

    def budget() -> tuple[int, int]:
        pdb = api.objects[("poddisruptionbudgets", "team-a", "web")]
        return pdb["spec"]["minAvailable"], api.objects[stored]["status"]["budgetMinAvailable"]

    async with running(server, CONFIG, release_keys, Events()) as runtime:
        written = await one_pass(runtime)
        assert written == [("patch", "poddisruptionbudgets"), ("create", "poddisruptionbudgets")]
        assert budget() == (2, 2)
        assert await one_pass(runtime) == []
        api.objects[stored]["spec"] = {**raw["spec"], "disruptions": {"maxUnavailable": 2}}
        assert await one_pass(runtime) == [("patch", "poddisruptionbudgets")]
        assert budget() == (1, 1)

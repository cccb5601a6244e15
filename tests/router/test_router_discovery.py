"""Discovery translations as pure functions: pods -> workers, BridgePool ->
settings, and the static pool list; and, in-process, a router that names a
static worker as its file does."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridgepool.labels import ANNOTATION_DRAINING, LABEL_POOL
from bridgepool.names import PoolRef
from bridgepool.protocol import HEADER_WORKER
from bridgepool_router.app import STATE, RouterConfig, create_app
from bridgepool_router.discovery import WorkerEndpoint
from bridgepool_router.discovery.kubernetes import (
    PoolView,
    settings_from_bridgepool,
    worker_from_pod,
)
from bridgepool_router.discovery.static import (
    StaticConfigError,
    StaticDiscovery,
    load_static_file,
    parse_static_flag,
)
from bridgepool_worker.app import create_app as create_worker_app
from bridgepool_worker.config import WorkerConfig
from tests.router.conftest import free_port

Client = TestClient[web.Request, web.Application]

DEMO = PoolRef("ns", "demo")


def pod(
    name: str = "demo-abc",
    *,
    pool: str | None = "demo",
    ip: str | None = "10.0.0.7",
    phase: str = "Running",
    ready: bool = True,
    annotations: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ns",
        "labels": {LABEL_POOL: pool} if pool else {},
        "annotations": annotations or {},
    }
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "worker", "ports": ports or []}]},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (pod(), (DEMO, WorkerEndpoint("demo-abc", "http://10.0.0.7:8080"))),
        (
            pod(ports=[{"name": "metrics", "containerPort": 9090},
                       {"name": "bridge", "containerPort": 9000}]),
            (DEMO, WorkerEndpoint("demo-abc", "http://10.0.0.7:9000")),
        ),
        (pod(ready=False),
         (DEMO, WorkerEndpoint("demo-abc", "http://10.0.0.7:8080", ready=False))),
        (
            pod(annotations={ANNOTATION_DRAINING: "2024-01-01T00:00:00Z"}),
            (DEMO, WorkerEndpoint("demo-abc", "http://10.0.0.7:8080", draining=True)),
        ),
        (pod(deleting=True),
         (DEMO, WorkerEndpoint("demo-abc", "http://10.0.0.7:8080", draining=True))),
        (pod(ip="fd00::7"), (DEMO, WorkerEndpoint("demo-abc", "http://[fd00::7]:8080"))),
        (pod(ip=None), None),
        (pod(phase="Pending"), None),
        (pod(phase="Succeeded"), None),
        (pod(pool=None), None),
    ],
)  # fmt: skip
def test_worker_from_pod(
    obj: dict[str, Any], expected: tuple[PoolRef, WorkerEndpoint] | None
) -> None:
    assert worker_from_pod(obj) == expected


def test_settings_from_bridgepool_reads_camel_case_with_defaults() -> None:
    obj = {
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": {
            "replicas": 3,
            "routing": {"callTimeoutSeconds": 5, "queue": {"maxLength": 7}},
            "sessions": {"idleTtlSeconds": 30},
        },
    }
    pool, settings = settings_from_bridgepool(obj)
    assert pool == DEMO
    assert settings.routing.call_timeout_seconds == 5
    assert settings.routing.queue.max_length == 7
    assert settings.routing.circuit_breaker.failure_threshold == 5  # default
    assert settings.sessions.idle_ttl_seconds == 30
    _, defaults = settings_from_bridgepool({"metadata": {"name": "plain"}, "spec": {}})
    assert defaults.routing.retries.max_attempts == 3


def test_settings_from_bridgepool_names_invalid_settings() -> None:
    bad = {"metadata": {"name": "demo"}, "spec": {"routing": {"queue": {"maxLength": -1}}}}
    with pytest.raises(ValueError, match=r"(?s)'default/demo'.*maxLength"):
        settings_from_bridgepool(bad)


def test_pool_view_follows_events() -> None:
    view = PoolView()
    other = PoolRef("ns", "other")
    assert view.set_pod("ADDED", pod("a")) == {DEMO}
    assert view.set_pod("ADDED", pod("b", ready=False)) == {DEMO}
    bp = {
        "metadata": {"name": "demo", "namespace": "ns"},
        "spec": {"routing": {"callTimeoutSeconds": 3}},
    }
    assert view.set_bridgepool("ADDED", bp) == {DEMO}
    snap = view.snapshot(DEMO)
    assert [w.worker for w in snap.workers] == ["a", "b"]
    assert snap.routing.call_timeout_seconds == 3
    # A pod that stops running leaves the pool; a relabelled pod moves pools.
    assert view.set_pod("MODIFIED", pod("b", phase="Failed")) == {DEMO}
    assert view.set_pod("MODIFIED", pod("a", pool="other")) == {DEMO, other}
    assert view.snapshot(DEMO).workers == ()
    assert view.set_pod("DELETED", pod("a", pool="other")) == {other}
    assert view.set_bridgepool("DELETED", bp) == {DEMO}
    assert view.pool_names() == set()


def test_pools_of_one_name_in_two_namespaces_are_two_pools() -> None:
    view = PoolView()
    team_a, team_b = PoolRef("team-a", "example"), PoolRef("team-b", "example")
    for ns, ip in (("team-a", "10.0.0.1"), ("team-b", "10.0.0.2")):
        obj = pod(f"example-{ns}", pool="example", ip=ip)
        obj["metadata"]["namespace"] = ns
        assert view.set_pod("ADDED", obj) == {PoolRef(ns, "example")}
    assert view.pool_names() == {team_a, team_b}
    assert [w.url for w in view.snapshot(team_a).workers] == ["http://10.0.0.1:8080"]
    assert [w.url for w in view.snapshot(team_b).workers] == ["http://10.0.0.2:8080"]


def test_static_flag() -> None:
    assert parse_static_flag("demo=http://a:1,http://b:2/") == (
        PoolRef("default", "demo"),
        ["http://a:1", "http://b:2"],
    )
    assert parse_static_flag("team-a/demo=http://a:1")[0] == PoolRef("team-a", "demo")
    for bad in ("demo", "=http://a:1", "demo=", "demo=ftp://a", "Team_A/demo=http://a:1"):
        with pytest.raises(StaticConfigError):
            parse_static_flag(bad)


def test_static_file(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(
        "pools:\n"
        "  demo:\n"
        "    urls: [http://127.0.0.1:1, http://127.0.0.1:2]\n"
        "    draining: [http://127.0.0.1:2]\n"
        "    routing: {queue: {maxLength: 3}}\n"
        "  plain: [http://127.0.0.1:3]\n"
    )
    demo, plain = load_static_file(path)
    assert [(w.worker, w.draining) for w in demo.workers] == [
        ("127.0.0.1:1", False),
        ("127.0.0.1:2", True),
    ]
    assert demo.routing.queue.max_length == 3
    assert plain.ref == PoolRef("default", "plain") and len(plain.workers) == 1


def test_static_file_namespaces(tmp_path: Path) -> None:
    """Bare names are in the file's namespace; ``NS/NAME`` in its own; a pool
    named twice, or a namespace that is not a Kubernetes name, is refused."""
    path = tmp_path / "pools.yaml"
    path.write_text(
        "namespace: team-a\n"
        "pools:\n"
        "  demo: [http://127.0.0.1:1]\n"
        "  team-b/demo: [http://127.0.0.1:2]\n"
    )
    refs = [snap.ref for snap in load_static_file(path)]
    assert refs == [PoolRef("team-a", "demo"), PoolRef("team-b", "demo")]
    path.write_text("pools: {demo: [http://127.0.0.1:1], default/demo: [http://127.0.0.1:2]}")
    with pytest.raises(StaticConfigError, match="'default/demo' is listed twice"):
        load_static_file(path)
    path.write_text("namespace: Team_A\npools: {demo: [http://127.0.0.1:1]}\n")
    with pytest.raises(StaticConfigError, match="RFC 1123"):
        load_static_file(path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[]", "'pools' mapping"),
        ("pools: {demo: {urls: [http://a:1], draining: [http://b:1]}}", "draining URLs not"),
        ("pools: {demo: {urls: [http://a:1], extra: 1}}", "unknown keys"),
        ("pools: {demo: {urls: [http://a:1], routing: {queue: {maxLength: -1}}}}", "maxLength"),
        ("pools: {demo: [notaurl]}", "not an http"),
        ("pools: [", "not valid YAML"),
    ],
)  # fmt: skip
def test_static_file_errors_name_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text(text)
    with pytest.raises(StaticConfigError, match=problem):
        load_static_file(path)


# -- static workers with names of their own -------------------------------------------------


def _pool_file(tmp_path: Path, demo: str) -> Path:
    path = tmp_path / "pools.yaml"
    path.write_text(f"pools:\n  demo: {demo}\n")
    return path


@pytest.mark.parametrize(
    ("demo", "workers"),
    [
        ("{workers: [{name: demo-0, url: 'http://127.0.0.1:1/'}]}",
         [WorkerEndpoint("demo-0", "http://127.0.0.1:1")]),
        ("{workers: [{name: demo-0, url: 'http://127.0.0.1:1', draining: true, ready: false}]}",
         [WorkerEndpoint("demo-0", "http://127.0.0.1:1", draining=True, ready=False)]),
        ("{workers: [{name: demo-0, url: 'http://127.0.0.1:1', draining: false, ready: true}]}",
         [WorkerEndpoint("demo-0", "http://127.0.0.1:1")]),
        # both: those of urls first, named host:port, then those of workers
        ("{urls: ['http://127.0.0.1:1', 'http://127.0.0.1:2'], draining: ['http://127.0.0.1:2'],"
         " workers: [{name: '127.0.0.1:3', url: 'http://127.0.0.1:3'},"
         " {name: Worker_B, url: 'https://b.example:8443', ready: false}]}",
         [WorkerEndpoint("127.0.0.1:1", "http://127.0.0.1:1"),
          WorkerEndpoint("127.0.0.1:2", "http://127.0.0.1:2", draining=True),
          WorkerEndpoint("127.0.0.1:3", "http://127.0.0.1:3"),
          WorkerEndpoint("Worker_B", "https://b.example:8443", ready=False)]),
        ("{urls: [], workers: []}", []),
    ],
)  # fmt: skip
def test_static_file_workers_are_named_as_listed(
    tmp_path: Path, demo: str, workers: list[WorkerEndpoint]
) -> None:
    (snapshot,) = load_static_file(_pool_file(tmp_path, demo))
    assert list(snapshot.workers) == workers


def test_static_file_workers_in_json(tmp_path: Path) -> None:
    path = tmp_path / "pools.json"
    worker = {"name": "demo-0", "url": "http://127.0.0.1:1", "draining": True}
    path.write_text(json.dumps({"pools": {"demo": {"workers": [worker]}}}))
    (snapshot,) = load_static_file(path)
    assert snapshot.workers == (WorkerEndpoint("demo-0", "http://127.0.0.1:1", draining=True),)


UNIQUE = "each worker's name and URL are its own within a pool"


@pytest.mark.parametrize(
    ("demo", "problem"),
    [
        ("{workers: [{name: a, url: 'http://a:1', weight: 2}]}",
         "workers[0] ('a'): unknown keys ['weight']; a worker has draining, name, ready, url"),
        ("{workers: [{url: 'http://a:1'}]}", "workers[0]: missing name"),
        ("{workers: [{name: a}]}", "workers[0] ('a'): missing url"),
        ("{workers: [{}]}", "workers[0]: missing name and url"),
        ("{workers: [{name: 7, url: 'http://a:1'}]}",
         "workers[0]: a worker name is 1 to 253 printable ASCII characters, no spaces; got 7"),
        ("{workers: [{name: 'demo 0', url: 'http://a:1'}]}",
         "workers[0] ('demo 0'): a worker name is 1 to 253 printable ASCII characters, "
         "no spaces; got 'demo 0'"),
        ("{workers: [{name: '', url: 'http://a:1'}]}",
         "workers[0] (''): a worker name is 1 to 253 printable ASCII characters, no spaces; "
         "got ''"),
        ("{workers: [{name: a, url: 'ftp://a:1'}]}",
         "workers[0] ('a'): worker URL 'ftp://a:1' is not an http(s) URL"),
        ("{workers: [{name: a, url: 5}]}", "workers[0] ('a'): url must be a string; got 5"),
        ("{workers: [{name: a, url: 'http://a:1', draining: 'no'}]}",
         "workers[0] ('a'): draining must be true or false; got 'no'"),
        ("{workers: [{name: a, url: 'http://a:1', ready: 1}]}",
         "workers[0] ('a'): ready must be true or false; got 1"),
        ("{workers: [{name: a, url: 'http://a:1'}, {name: a, url: 'http://a:2'}]}",
         f"workers[1] ('a'): name 'a' is already that of workers[0] ('a'): {UNIQUE}"),
        ("{workers: [{name: a, url: 'http://a:1'}, {name: b, url: 'http://a:1/'}]}",
         f"workers[1] ('b'): URL 'http://a:1' is already that of workers[0] ('a'): {UNIQUE}"),
        ("{urls: ['http://a:1'], workers: [{name: b, url: 'http://a:1'}]}",
         f"workers[0] ('b'): URL 'http://a:1' is already that of urls[0] ('http://a:1'): "
         f"{UNIQUE}"),
        ("{urls: ['http://a:1'], workers: [{name: 'a:1', url: 'https://a:1'}]}",
         f"workers[0] ('a:1'): name 'a:1' is already that of urls[0] ('http://a:1'): {UNIQUE}"),
        ("{urls: ['http://a:1', 'http://a:1']}",
         f"urls[1] ('http://a:1'): name 'a:1' is already that of urls[0] ('http://a:1'): "
         f"{UNIQUE}"),
        ("{urls: ['http://a:1', 'a:2']}",
         "urls[1] ('a:2'): worker URL 'a:2' is not an http(s) URL"),
        ("{workers: ['http://a:1']}", "workers[0]: expected a mapping with a name and a url"),
        ("{workers: {name: a, url: 'http://a:1'}}", "workers: expected a list of mappings"),
        ("{urls: 'http://a:1'}", "urls: expected a list of URLs"),
        ("{draining: ['http://a:1'], workers: [{name: a, url: 'http://a:1'}]}",
         "draining URLs not in urls: ['http://a:1'] (a worker of 'workers' has its own "
         "draining flag)"),
    ],
)  # fmt: skip
def test_static_file_worker_errors_name_the_pool_the_entry_and_the_problem(
    tmp_path: Path, demo: str, problem: str
) -> None:
    path = _pool_file(tmp_path, demo)
    with pytest.raises(StaticConfigError) as refused:
        load_static_file(path)
    assert str(refused.value) == f"{path}: pool 'demo': {problem}"


async def test_the_router_calls_a_listed_worker_by_its_name_in_the_file(
    tmp_path: Path,
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> None:
    # The worker calls itself otherwise: the name the router uses is the file's.
    worker = await aiohttp_server(
        create_worker_app(WorkerConfig(name="its-own-name", open_access=True))
    )
    url = str(worker.make_url("")).rstrip("/")
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens: it never answers
    path = tmp_path / "pools.yaml"
    path.write_text(
        "pools:\n"
        "  demo:\n"
        "    workers:\n"
        f"      - {{name: demo-0, url: '{url}'}}\n"
        f"      - {{name: demo-1, url: '{gone}', draining: true, ready: false}}\n"
    )
    app = create_app(RouterConfig(discovery=StaticDiscovery(file=path)))
    router = await aiohttp_client(app)
    registry = app[STATE].registry
    assert registry is not None
    await registry.synced.wait()

    for _ in range(3):  # never the draining, not-ready one
        resp = await router.post("/v1/pools/demo/execute", json={"command": "ping"})
        assert resp.status == 200, await resp.text()
        assert resp.headers[HEADER_WORKER] == "demo-0"
    view = await (await router.get("/v1/pools/demo")).json()
    assert [(w["worker"], w["draining"], w["ready"]) for w in view["workers"]] == [
        ("demo-0", False, True),
        ("demo-1", True, False),
    ]

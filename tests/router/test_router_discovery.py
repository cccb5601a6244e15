"""Discovery translations as pure functions: pods -> workers, BridgePool ->
settings, and the static pool list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridgepool.labels import ANNOTATION_DRAINING, LABEL_POOL
from bridgepool.names import PoolRef
from bridgepool_router.discovery import WorkerEndpoint
from bridgepool_router.discovery.kubernetes import (
    PoolView,
    settings_from_bridgepool,
    worker_from_pod,
)
from bridgepool_router.discovery.static import (
    StaticConfigError,
    load_static_file,
    parse_static_flag,
)

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

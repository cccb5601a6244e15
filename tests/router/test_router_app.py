"""The router's HTTP layer in-process: bad input gets the structured error body."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridgepool.credentials import (
    KeyDir,
    Keys,
    PoolKeys,
    bearer,
    new_key,
    pool_key_dir,
    write_keys,
)
from bridgepool.errors import ErrorInfo
from bridgepool.names import PoolRef
from bridgepool.spec import RoutingSettings
from bridgepool_router.app import STATE, RouterConfig, create_app
from bridgepool_router.discovery import DiscoverySink, PoolSnapshot, WorkerEndpoint
from bridgepool_router.discovery.static import StaticDiscovery
from bridgepool_worker.app import create_app as create_worker_app
from bridgepool_worker.config import WorkerConfig
from tests.router.conftest import FAST_ROUTING, WORKER_HANDLERS

Client = TestClient[web.Request, web.Application]

DEMO = PoolRef("default", "demo")


@pytest.fixture
def release_keys(tmp_path: Path) -> KeyDir:
    write_keys(tmp_path / "release", Keys(new_key()))
    return KeyDir(tmp_path / "release")


@pytest.fixture
async def worker(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    release_keys: KeyDir,
    tmp_path: Path,
) -> TestServer:
    keys_dir = tmp_path / "demo-keys"
    pool_key_dir(release_keys.keys(), DEMO, keys_dir)
    worker_config = WorkerConfig(
        name="worker",
        capacity=4,
        handlers=WORKER_HANDLERS,
        faults_enabled=True,
        keys_dir=keys_dir,
    )
    return await aiohttp_server(create_worker_app(worker_config))


@pytest.fixture
async def router(
    worker: TestServer,
    release_keys: KeyDir,
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> Client:
    url = str(worker.make_url("")).rstrip("/")
    config = RouterConfig(
        discovery=StaticDiscovery([f"demo={url}"]),
        max_body_bytes=1024,
        worker_keys=PoolKeys(release_keys),
    )
    return await aiohttp_client(create_app(config))


def demo_key(release_keys: KeyDir) -> dict[str, str]:
    """The header the demo pool's worker asks of its callers."""
    return {"Authorization": bearer(PoolKeys(release_keys).of(DEMO).current)}


async def error_of(resp: Any) -> ErrorInfo:
    body = await resp.json()
    assert body["success"] is False
    return ErrorInfo.model_validate(body["error"])


EX = "/v1/pools/demo/execute"
SX = "/v1/pools/demo/sessions/s1/execute"
PING = b'{"command": "ping"}'
# A worker-side failure (500): counts against the worker, unlike a handler's error.
CRASH = {"command": "fault", "args": {"kind": "error"}}
COMM = "communication"
BIG = b'{"command": "ping", "args": {"pad": "' + b"x" * 2000 + b'"}}'
T = "X-BridgePool-Timeout"


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "category", "type_"),
    [
        ("POST", "/v1/pools/nope/execute", PING, {}, 404, "resource", "unknown_pool"),
        ("POST", EX, b"{not json", {}, 400, COMM, "invalid_json"),
        ("POST", EX, b"[1, 2]", {}, 400, COMM, "invalid_request"),
        ("POST", EX, b'{"args": {}}', {}, 400, COMM, "invalid_request"),
        ("POST", EX, b'{"command": "x", "bogus": 1}', {}, 400, COMM, "invalid_request"),
        ("POST", EX, b'{"command": "x", "session_id": "s"}', {}, 400, COMM,
         "session_in_anonymous_call"),
        ("POST", SX, b'{"command": "x", "session_id": "s2"}', {}, 400, "session",
         "session_mismatch"),
        ("POST", EX, PING, {T: "soon"}, 400, COMM, "invalid_timeout"),
        ("POST", EX, PING, {T: "-1"}, 400, COMM, "invalid_timeout"),
        ("POST", EX, BIG, {}, 413, "resource", "body_too_large"),
        ("GET", EX, None, {}, 405, COMM, "method_not_allowed"),
        ("PUT", "/v1/pools/demo/sessions/s1", None, {}, 405, COMM, "method_not_allowed"),
        ("GET", "/v1/nothing-here", None, {}, 404, COMM, "not_found"),
        ("DELETE", "/v1/pools/demo/sessions/never", None, {}, 404, "session",
         "session_not_found"),
    ],
)  # fmt: skip
async def test_bad_input(
    router: Client,
    method: str,
    path: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    category: str,
    type_: str,
) -> None:
    resp = await router.request(method, path, data=body, headers=headers)
    assert resp.status == status
    error = await error_of(resp)
    assert (error.category.value, error.type) == (category, type_)
    assert error.message


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "0", "-0.5", "soon", ""])
async def test_a_timeout_that_is_not_a_positive_duration_is_refused_by_router_and_worker(
    router: Client,
    worker: TestServer,
    release_keys: KeyDir,
    aiohttp_client: Callable[[TestServer], Awaitable[Client]],
    value: str,
) -> None:
    direct = await aiohttp_client(worker)
    for client, path, key in ((router, EX, {}), (direct, "/v1/execute", demo_key(release_keys))):
        resp = await client.post(path, data=PING, headers={T: value, **key})
        assert resp.status == 400, (path, await resp.text())
        error = await error_of(resp)
        assert (error.category.value, error.type) == (COMM, "invalid_timeout")
        assert T in error.message


async def test_session_id_from_the_path_reaches_the_worker(router: Client) -> None:
    # Same id in body and path is fine; the worker sees the path's id.
    for body in ({"command": "incr"}, {"command": "incr", "session_id": "s1"}):
        resp = await router.post("/v1/pools/demo/sessions/s1/execute", json=body)
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-BridgePool-Session"] == "s1"
    assert (await resp.json())["result"] == {"count": 2}


async def test_handler_errors_pass_through_and_do_not_trip_the_breaker(router: Client) -> None:
    for _ in range(8):
        resp = await router.post("/v1/pools/demo/execute", json={"command": "fail"})
        assert resp.status == 422
        assert (await error_of(resp)).category.value == "python"
    pool = await (await router.get("/v1/pools/demo")).json()
    assert pool["workers"][0]["breaker"] == "closed"


async def test_worker_5xx_counts_against_the_worker(router: Client) -> None:
    for _ in range(5):
        resp = await router.post("/v1/pools/demo/execute", json=CRASH)
        assert resp.status == 500
    pool = await (await router.get("/v1/pools/demo")).json()
    assert pool["workers"][0]["breaker"] == "open"
    # Panic mode: the only worker is still tried rather than failing every call.
    resp = await router.post("/v1/pools/demo/execute", json={"command": "ping"})
    assert resp.status == 200


async def test_health_metrics_and_pool_listing(router: Client) -> None:
    assert (await router.get("/healthz")).status == 200
    assert (await router.get("/readyz")).status == 200
    await router.post("/v1/pools/demo/execute", json={"command": "ping"})
    metrics = await (await router.get("/metrics")).text()
    assert (
        'bridgepool_router_requests_total{namespace="default",outcome="success",pool="demo"} 1.0'
        in metrics
    )
    assert "bridgepool_router_added_latency_seconds_bucket" in metrics
    listing = await (await router.get("/v1/pools")).json()
    assert [p["pool"] for p in listing["pools"]] == ["demo"]
    worker = listing["pools"][0]["workers"][0]
    assert {"worker", "state", "ready", "draining", "breaker", "in_flight", "capacity"} <= set(
        worker
    )


class FirstListingInProgress:
    """Discovery part-way through its first complete view, as after a router
    restart: one pool delivered, the rest still being listed until ``finish``."""

    def __init__(self, delivered: PoolSnapshot) -> None:
        self.delivered = delivered
        self.finish = asyncio.Event()

    async def run(self, sink: DiscoverySink) -> None:
        sink.apply(self.delivered)
        await self.finish.wait()
        sink.mark_synced()


async def test_an_unknown_pool_is_a_retryable_503_until_discovery_has_synced(
    worker: TestServer,
    release_keys: KeyDir,
    aiohttp_client: Callable[[web.Application], Awaitable[Client]],
) -> None:
    url = str(worker.make_url("")).rstrip("/")
    discovery = FirstListingInProgress(PoolSnapshot(DEMO, (WorkerEndpoint("w", url),)))
    app = create_app(RouterConfig(discovery=discovery, worker_keys=PoolKeys(release_keys)))
    router = await aiohttp_client(app)
    assert (await router.get("/readyz")).status == 503

    for resp in (
        await router.post("/v1/pools/later/execute", data=PING),
        await router.post("/v1/pools/later/sessions/s1/execute", data=PING),
        await router.get("/v1/pools/later"),
    ):
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        error = await error_of(resp)
        assert (error.category.value, error.type, error.retryable) == (
            "initialization",
            "discovery_not_synced",
            True,
        )
        assert error.context == {"namespace": "default", "pool": "later"}
    # A pool already delivered is served meanwhile.
    assert (await router.post("/v1/pools/demo/execute", data=PING)).status == 200

    discovery.finish.set()
    registry = app[STATE].registry
    assert registry is not None
    await registry.synced.wait()
    assert (await router.get("/readyz")).status == 200
    resp = await router.post("/v1/pools/later/execute", data=PING)
    assert resp.status == 404
    assert (await error_of(resp)).type == "unknown_pool"


class HealthChanges(logging.Handler):
    """The router's "worker health changed" records, as (level, up), as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bool]] = []
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "worker health changed":
            self.seen.append((record.levelno, record.__dict__["up"]))
            self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.seen) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_a_worker_going_down_is_a_warning_and_coming_back_is_info(
    worker: TestServer,
    release_keys: KeyDir,
    aiohttp_client: Callable[[web.Application | TestServer], Awaitable[Client]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="bridgepool_router")
    changes = HealthChanges()
    logging.getLogger("bridgepool_router").addHandler(changes)
    try:
        url = str(worker.make_url("")).rstrip("/")
        routing = RoutingSettings.model_validate(FAST_ROUTING)
        discovery = StaticDiscovery([f"demo={url}"], routing=routing)
        await aiohttp_client(create_app(RouterConfig(discovery=discovery)))
        direct = await aiohttp_client(worker)
        for kind in ("unhealthy", "clear"):
            fault = {"command": "fault", "args": {"kind": kind}}
            resp = await direct.post("/v1/execute", json=fault, headers=demo_key(release_keys))
            assert resp.status == 200
            await changes.wait_for(len(changes.seen) + 1)
    finally:
        logging.getLogger("bridgepool_router").removeHandler(changes)
    assert changes.seen == [(logging.WARNING, False), (logging.INFO, True)]

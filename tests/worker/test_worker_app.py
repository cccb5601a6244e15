"""The app in-process (``create_app``): two workers in one process keep their
own metrics, and the readiness gate waits for the initial self-ping."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridgepool.protocol import HEADER_WORKER
from bridgepool_worker.app import RUNTIME, create_app
from bridgepool_worker.config import WorkerConfig

ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


async def test_two_apps_in_one_process_keep_separate_metrics(
    aiohttp_client: Callable[
        [web.Application], Awaitable[TestClient[web.Request, web.Application]]
    ],
) -> None:
    a = await aiohttp_client(create_app(WorkerConfig(name="a", open_access=True)))
    b = await aiohttp_client(create_app(WorkerConfig(name="b", open_access=True)))
    for _ in range(3):
        assert (await a.post("/v1/execute", json={"command": "ping"})).status == 200
    response = await b.post("/v1/execute", json={"command": "ping"})
    assert response.headers[HEADER_WORKER] == "b"

    a_metrics = await (await a.get("/metrics")).text()
    b_metrics = await (await b.get("/metrics")).text()
    assert 'bridgepool_worker_calls_total{command="ping",status="200"} 3.0' in a_metrics
    assert 'bridgepool_worker_calls_total{command="ping",status="200"} 1.0' in b_metrics


async def test_not_ready_until_initialized() -> None:
    app = create_app(WorkerConfig(name="gate", open_access=True))
    runtime = app[RUNTIME]
    assert runtime.readiness().ready is False
    assert runtime.readiness().reason == "initializing"
    async with TestClient(TestServer(app)) as client:
        # The self-ping runs in the background as the app starts.
        for _ in range(100):
            if (await client.get("/readyz")).status == 200:
                break
            await asyncio.sleep(0.01)
        assert runtime.readiness().ready is True
        stats = await (await client.get("/v1/stats")).json()
        assert stats["requests_total"] == 0  # the self-ping is not a request
    assert runtime.lifecycle.state.value == "terminated"

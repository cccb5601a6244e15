"""The chaos machinery's fault commands against a fake worker: a busy worker's
refusal is waited out, any other refusal stops the run."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from benchmarks.chaos import (
    WORKER_BUSY,
    FaultRecord,
    Load,
    Victim,
    Watch,
    WorkerFaults,
    error_type,
    run_chaos,
)
from bridgepool.credentials import Keys, new_key
from bridgepool.protocol import HEADER_WAIT_FOR_SLOT

Serve = Callable[[web.Application], Awaitable[TestServer]]
KEYS = Keys(new_key())


def refusal(status: int, type_: str) -> web.Response:
    body = {"success": False, "error": {"category": "resource", "type": type_}}
    return web.json_response(body, status=status)


@dataclass
class FakeWorker:
    """Answers ``answers`` in turn, then 200; records what it was sent."""

    answers: list[web.Response]
    seen: list[tuple[str, str, dict[str, object]]] = field(default_factory=list)

    async def execute(self, request: web.Request) -> web.Response:
        self.seen.append(
            (
                request.headers.get("Authorization", ""),
                request.headers.get(HEADER_WAIT_FOR_SLOT, ""),
                await request.json(),
            )
        )
        if self.answers:
            return self.answers.pop(0)
        return web.json_response({"success": True, "result": {"fault": "unhealthy"}})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/execute", self.execute)
        return app


@dataclass
class OneWorkerFaults(WorkerFaults):
    url: str
    http: aiohttp.ClientSession
    replicas: int = 2
    capacity: int = 2
    records: list[FaultRecord] = field(default_factory=list)
    _hanging: set[object] = field(default_factory=set)  # type: ignore[assignment]

    def kinds(self) -> dict[str, Callable[[], Awaitable[str]]]:
        return {"unhealthy": self.unhealthy}

    async def _victim(self) -> Victim:
        return Victim("soak-abcde", self.url)

    async def _pool_keys(self) -> Keys:
        return KEYS


async def test_a_busy_worker_gets_the_fault_once_a_slot_is_free(aiohttp_server: Serve) -> None:
    worker = FakeWorker([refusal(503, WORKER_BUSY), refusal(503, WORKER_BUSY)])
    server = await aiohttp_server(worker.app())
    async with aiohttp.ClientSession() as http:
        faults = OneWorkerFaults(str(server.make_url("")).rstrip("/"), http)
        record = await faults.inject("unhealthy")
    assert record.target == "soak-abcde"
    assert len(worker.seen) == 3
    assert {(auth, wait) for auth, wait, _ in worker.seen} == {(f"Bearer {KEYS.current}", "true")}
    assert worker.seen[-1][2] == {"command": "fault", "args": {"kind": "unhealthy", "seconds": 20}}


async def test_a_fault_the_worker_refused_stops_the_run(aiohttp_server: Serve) -> None:
    """A refusal other than a busy worker's is not a fault: timing it as one
    would report a recovery from nothing."""
    server = await aiohttp_server(FakeWorker([refusal(400, "invalid_args")]).app())
    async with aiohttp.ClientSession() as http:
        faults = OneWorkerFaults(str(server.make_url("")).rstrip("/"), http)
        with pytest.raises(RuntimeError, match="refused the fault command"):
            await faults.inject("unhealthy")
    assert faults.records == []


def test_the_error_type_of_an_answer() -> None:
    assert error_type(json.dumps({"error": {"type": WORKER_BUSY}})) == WORKER_BUSY
    assert error_type(json.dumps({"error": None})) == ""
    assert error_type("not json") == ""
    assert error_type("[]") == ""


async def test_a_fault_not_injected_ends_the_load_before_the_run_fails(
    aiohttp_server: Serve,
) -> None:
    server = await aiohttp_server(FakeWorker([refusal(400, "invalid_args")]).app())
    url = str(server.make_url("")).rstrip("/")

    async def no_pool() -> dict[str, object]:
        return {}

    async with aiohttp.ClientSession() as http:
        load = Load(url, rate=50, sessions=2)
        watch = Watch(no_pool, "soak", url)
        faults = OneWorkerFaults(url, http)
        with pytest.raises(RuntimeError, match="refused the fault command"):
            await run_chaos(load, watch, faults, ["unhealthy"], warmup=0.2, seconds=1)
    assert load.calls, "the load ran"
    assert all(c.done for c in load.calls), "every call ended while the session was open"

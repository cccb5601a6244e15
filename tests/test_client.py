"""The Python client against real processes: a pool of two workers behind a real
router, and one worker on its own, each through the sync and the async flavour."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from bridgepool.client import (
    AsyncBridgePoolClient,
    AsyncWorkerClient,
    BridgeClient,
    BridgePoolClient,
    CommunicationError,
    ConnectionFailedError,
    HandlerError,
    ResourceError,
    SessionError,
    WorkerClient,
)
from bridgepool.credentials import bearer
from bridgepool.protocol import WorkerState
from tests.router.conftest import FAST_ROUTING, Proc, Processes, free_port


class Pool:
    """Two workers and a router serving them as pool ``demo``."""

    def __init__(self, procs: Processes) -> None:
        self.key = procs.key()
        self.workers = [procs.worker(), procs.worker()]
        pools = {"demo": {"urls": [w.url for w in self.workers], "routing": FAST_ROUTING}}
        self.router = procs.router(procs.write_pools(pools))

    @property
    def worker(self) -> Proc:
        return self.workers[0]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    procs = Processes(tmp_path_factory.mktemp("client"))
    try:
        yield Pool(procs)
    finally:
        procs.close()


@pytest.fixture(params=["router", "worker"])
def client(request: pytest.FixtureRequest, pool: Pool) -> Iterator[BridgeClient]:
    """The same interface through the router and to one worker directly."""
    with (
        BridgePoolClient(pool.router.url, "demo", namespace="default", timeout=10)
        if request.param == "router"
        else WorkerClient(pool.worker.url, key=pool.key, timeout=10)
    ) as c:
        yield c


def session_of(request: pytest.FixtureRequest) -> str:
    """A session id of this test alone (the processes are shared by the module),
    kept to the characters a session id may have."""
    return re.sub(r"[^A-Za-z0-9._~:@+=-]", "-", request.node.name)


def test_programs_round_trip(client: BridgeClient, request: pytest.FixtureRequest) -> None:
    session = session_of(request)
    qa = client.create_program(session, "question -> answer", instructions="Be brief.")
    assert (qa.inputs, qa.outputs, qa.backend) == (["question"], ["answer"], "offline")
    assert qa.instructions == "Be brief."
    summary = client.create_program(
        session, inputs=["text"], outputs=["summary", "title"], program_id="summarize"
    )
    assert (summary.program_id, summary.signature) == ("summarize", "text -> summary, title")

    first = client.execute_program(session, qa.program_id, {"question": "2+2?"})
    again = client.execute_program(session, qa.program_id, {"question": "2+2?"}, timeout=5)
    assert first == again  # the offline backend is deterministic
    assert list(first.outputs) == ["answer"]
    assert first.program_id == qa.program_id

    listed = {p.program_id: p for p in client.list_programs(session)}
    assert set(listed) == {qa.program_id, "summarize"}
    assert listed[qa.program_id].executions == 2
    assert client.get_program_info(session, "summarize") == summary

    client.delete_program(session, "summarize")
    assert [p.program_id for p in client.list_programs(session)] == [qa.program_id]
    with pytest.raises(SessionError) as missing:
        client.get_program_info(session, "summarize")
    assert (missing.value.info.type, missing.value.status) == ("program_not_found", 404)
    client.delete_session(session)


def test_bad_program_arguments_are_named(client: BridgeClient) -> None:
    with pytest.raises(CommunicationError) as bad:
        client.create_program("bad-args", "question")  # no "->"
    assert (bad.value.info.type, bad.value.status) == ("invalid_args", 400)
    assert "signature" in bad.value.info.message


def test_calls_and_sessions(client: BridgeClient, request: pytest.FixtureRequest) -> None:
    session = session_of(request)
    assert client.execute_in_session(session, "incr").result == {"count": 1}
    second = client.execute_in_session(session, "incr", {"by": 2})
    assert (second.result, second.rebound) == ({"count": 3}, False)
    assert second.worker is not None
    client.delete_session(session)
    assert client.execute_in_session(session, "incr").result == {"count": 1}  # a fresh one
    client.delete_session(session)

    assert client.execute_anonymous("echo", {"a": 1}, idempotent=True).result == {"a": 1}
    with pytest.raises(HandlerError) as failed:
        client.execute_anonymous("fail", {"message": "no"})
    assert (failed.value.info.type, failed.value.status) == ("ValueError", 422)


def test_a_session_call_sent_again_with_its_call_id_runs_once(
    client: BridgeClient, request: pytest.FixtureRequest
) -> None:
    """Each session call carries a call id; sending the call again with it (a
    caller retrying after its answer was lost) gets the first answer back."""
    session = session_of(request)
    first = client.execute_in_session(session, "incr")
    assert first.call_id is not None and not first.replayed
    again = client.execute_in_session(session, "incr", call_id=first.call_id)
    assert (again.result, again.replayed) == ({"count": 1}, True)
    assert client.execute_in_session(session, "incr").result == {"count": 2}
    with pytest.raises(SessionError) as refused:
        client.execute_in_session(session, "incr", call_id="not valid")
    assert refused.value.info.type == "invalid_call_id"
    client.delete_session(session)


def test_health(client: BridgeClient) -> None:
    health = client.health()
    assert (health.ready, health.reason) == (True, None)


def test_nothing_listening_is_a_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for target, client in (
        ("router", BridgePoolClient(url, "demo")),
        ("worker", WorkerClient(url)),
    ):
        with client, pytest.raises(ConnectionFailedError) as unreachable:
            client.health()
        assert unreachable.value.info.type == f"{target}_unreachable"
        assert unreachable.value.retryable


def test_pool_status(pool: Pool, request: pytest.FixtureRequest) -> None:
    with BridgePoolClient(pool.router.url, "demo") as client:
        before = client.pool_status()
        holder = client.execute_in_session(session_of(request), "incr").worker
        after = client.pool_status()
    assert (after.pool, after.ready_workers, after.queue_length) == ("demo", 2, 0)
    assert after.sessions == before.sessions + 1
    assert {w.url for w in after.workers} == {w.url for w in pool.workers}
    assert holder is not None
    counts = [{w.worker: w.sessions for w in status.workers} for status in (before, after)]
    assert counts[1][holder] == counts[0][holder] + 1
    for worker in after.workers:
        assert worker.state in (WorkerState.READY, WorkerState.BUSY)
        assert (worker.breaker, worker.draining, worker.capacity) == ("closed", False, 8)
    assert after.routing.call_timeout_seconds == FAST_ROUTING["callTimeoutSeconds"]
    assert after.routing.health.interval_seconds == FAST_ROUTING["health"]["intervalSeconds"]


@pytest.mark.parametrize("session_id", ["", "a/b", "a\r\nX-Evil: 1", "a\x00b", "s" * 257])
def test_a_bad_session_id_is_one_error_wherever_it_is_caught(pool: Pool, session_id: str) -> None:
    """The client refuses it before sending, with the error the router and the
    worker give for it (bridgepool.names), as the exception class of its category."""
    raw = {
        "router": httpx.post(
            f"{pool.router.url}/v1/namespaces/default/pools/demo/sessions/"
            f"{quote(session_id, safe='')}/execute",
            json={"command": "ping"},
        ),
        "worker": httpx.post(
            f"{pool.worker.url}/v1/execute",
            json={"command": "ping", "session_id": session_id},
            headers={"Authorization": bearer(pool.key)},
        ),
    }
    for client in (
        BridgePoolClient(pool.router.url, "demo", namespace="default"),
        WorkerClient(pool.worker.url, key=pool.key),
    ):
        with client, pytest.raises(SessionError) as caught:
            client.execute_in_session(session_id, "incr")
        assert (caught.value.status, caught.value.info.type) == (400, "invalid_session_id")
        assert "a session id is 1 to" in caught.value.info.message
    for who, response in raw.items():
        if who == "router" and session_id == "":
            continue  # an empty path segment is another route: 404
        error = response.json()["error"]
        assert response.status_code == 400, (who, response.text)
        assert (error["category"], error["type"]) == ("session", "invalid_session_id"), who
        assert "a session id is 1 to" in error["message"]


def test_a_pool_is_named_by_namespace_and_name(pool: Pool) -> None:
    with BridgePoolClient(pool.router.url, "demo", namespace="default") as client:
        assert (client.pool_status().namespace, client.pool_status().pool) == ("default", "demo")
        session = client.new_session_id()
        assert client.execute_in_session(session, "incr").result == {"count": 1}
    with BridgePoolClient(pool.router.url, "demo", namespace="elsewhere") as client:
        with pytest.raises(ResourceError) as unknown:
            client.pool_status()
        assert unknown.value.info.context == {"namespace": "elsewhere", "pool": "demo"}


def test_unknown_pool_is_a_resource_error(pool: Pool) -> None:
    with BridgePoolClient(pool.router.url, "no-such-pool") as client:
        for call in (client.pool_status, lambda: client.execute_anonymous("ping")):
            with pytest.raises(ResourceError) as unknown:
                call()
            assert (unknown.value.info.type, unknown.value.status) == ("unknown_pool", 404)


def test_worker_client_needs_a_session_for_programs(pool: Pool) -> None:
    with WorkerClient(pool.worker.url, key=pool.key) as client:
        with pytest.raises(SessionError) as no_session:
            client.execute_anonymous("list_programs")
        assert (no_session.value.info.type, no_session.value.status) == ("session_required", 400)
        with pytest.raises(SessionError) as unknown:
            client.delete_session("never-opened")
        assert (unknown.value.info.type, unknown.value.status) == ("session_not_found", 404)
        stats = client.stats()
    assert stats.worker == f"worker-{pool.worker.port}"
    assert stats.capacity == 8


def test_worker_client_health_follows_the_worker(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    try:
        worker = procs.worker(capacity=3)
        with WorkerClient(worker.url, key=procs.key()) as client:
            client.execute_anonymous("fault", {"kind": "unhealthy"})
            sick = client.health()
            client.execute_anonymous("fault", {"kind": "clear"})
            well = client.health()
    finally:
        procs.close()
    assert (sick.ready, sick.readiness and sick.readiness.state) == (False, WorkerState.DEGRADED)
    assert sick.reason
    assert well.ready
    assert well.readiness is not None
    assert (well.readiness.worker, well.readiness.capacity) == (f"worker-{worker.port}", 3)


def test_worker_client_says_when_a_restart_lost_the_session(tmp_path: Path) -> None:
    """A worker restarted in place has lost its sessions; like the router, the
    single-worker client says so on the session's next answer, once."""
    procs = Processes(tmp_path)
    try:
        worker = procs.worker()
        with WorkerClient(worker.url, key=procs.key()) as client:
            assert client.execute_in_session("kept", "incr").result == {"count": 1}
            assert client.execute_in_session("other", "incr").result == {"count": 1}
            worker.kill(signal.SIGKILL)
            procs.worker(port=worker.port)
            answers = [client.execute_in_session(s, "incr") for s in ("kept", "other", "kept")]
    finally:
        procs.close()
    assert [a.result for a in answers] == [{"count": 1}, {"count": 1}, {"count": 2}]
    assert [a.rebound_reason for a in answers] == ["worker_restarted", "worker_restarted", None]
    assert [a.rebound for a in answers] == [True, True, False]


# -- the async flavour ---------------------------------------------------------------


async def test_async_router_client(pool: Pool, request: pytest.FixtureRequest) -> None:
    """Programs in concurrent sessions stay apart; status and health await too."""
    sessions = [f"{session_of(request)}-{i}" for i in range(4)]
    async with AsyncBridgePoolClient(pool.router.url, "demo", timeout=10) as client:
        created = await asyncio.gather(
            *(client.create_program(s, "question -> answer", program_id=s) for s in sessions)
        )
        runs = await asyncio.gather(
            *(client.execute_program(s, s, {"question": "why?"}) for s in sessions)
        )
        listed = await asyncio.gather(*(client.list_programs(s) for s in sessions))
        info = await client.get_program_info(sessions[0], sessions[0])
        await client.delete_program(sessions[0], sessions[0])
        with pytest.raises(SessionError):
            await client.execute_program(sessions[0], sessions[0], {"question": "why?"})
        status = await client.pool_status()
        health = await client.health()
        for s in sessions:
            await client.delete_session(s)
    assert [p.program_id for p in created] == sessions
    assert [[p.program_id for p in programs] for programs in listed] == [[s] for s in sessions]
    assert len({tuple(r.outputs.values()) for r in runs}) == 1  # same signature and inputs
    assert info.executions == 1
    assert status.ready_workers == 2
    assert health.ready


async def test_async_worker_client(pool: Pool) -> None:
    async with AsyncWorkerClient(pool.worker.url, key=pool.key) as client:
        program = await client.create_program("async-worker", inputs=["a", "b"], outputs=["c"])
        run = await client.execute_program("async-worker", program.program_id, {"a": 1, "b": 2})
        counted = await client.execute_in_session("async-worker", "incr")
        pong = await client.execute_anonymous("ping")
        health = await client.health()
        stats = await client.stats()
        with pytest.raises(CommunicationError) as wrong_inputs:
            await client.execute_program("async-worker", program.program_id, {"a": 1})
        await client.delete_session("async-worker")
    assert list(run.outputs) == ["c"]
    assert counted.result == {"count": 1}
    assert counted.worker == pong.worker == stats.worker == f"worker-{pool.worker.port}"
    assert health.readiness is not None and health.readiness.worker == stats.worker
    assert wrong_inputs.value.info.context["missing"] == ["b"]

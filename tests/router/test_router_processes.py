"""The router against real worker processes over real sockets (static backend)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from bridgepool.client import (
    AsyncBridgePoolClient,
    BridgePoolClient,
    ConnectionFailedError,
    HandlerError,
    ResourceError,
    SessionError,
)
from bridgepool.names import PoolRef
from tests.router.conftest import FAST_ROUTING, Proc, Processes, free_port, wait_until


def pool_entry(*workers: str, routing: dict[str, Any] | None = None, **extra: Any) -> Any:
    return {"urls": list(workers), "routing": {**FAST_ROUTING, **(routing or {})}, **extra}


def incr(router: str, session: str, pool: str = "demo") -> httpx.Response:
    return httpx.post(
        f"{router}/v1/namespaces/default/pools/{pool}/sessions/{session}/execute",
        json={"command": "incr"},
    )


def pool_state(router: str) -> dict[str, Any]:
    return httpx.get(f"{router}/v1/namespaces/default/pools/demo").json()  # type: ignore[no-any-return]


def test_sessions_stick_and_anonymous_calls_spread(procs: Processes) -> None:
    w1, w2 = procs.worker(), procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(w1.url, w2.url)}))
    # Calls without a session spread over equally loaded workers.
    anonymous = {
        httpx.post(
            f"{router.url}/v1/namespaces/default/pools/demo/execute", json={"command": "ping"}
        ).headers["X-BridgePool-Worker"]
        for _ in range(10)
    }
    assert len(anonymous) == 2
    served: dict[str, set[str]] = {}
    # New sessions go to their home worker (rendezvous hashing): 20 of them
    # land on both workers but for a chance of one in half a million.
    for i in range(5):
        for session in (f"s-{n}" for n in range(20)):
            r = incr(router.url, session)
            assert r.status_code == 200
            assert r.json()["result"] == {"count": i + 1}  # state lives on one worker
            served.setdefault(session, set()).add(r.headers["X-BridgePool-Worker"])
    assert all(len(workers) == 1 for workers in served.values())
    assert {w for ws in served.values() for w in ws} == {
        f"127.0.0.1:{w1.port}",
        f"127.0.0.1:{w2.port}",
    }


def test_two_routers_and_a_restarted_router_agree_on_a_session(procs: Processes) -> None:
    w1, w2, w3 = procs.worker(), procs.worker(), procs.worker()
    pools = procs.write_pools({"demo": pool_entry(w1.url, w2.url, w3.url)})
    router_a = procs.router(pools)
    router_b = procs.router(pools)
    first = incr(router_a.url, "shared")
    holder = first.headers["X-BridgePool-Worker"]
    # Router B has never seen the session: it asks the workers and finds the holder.
    second = incr(router_b.url, "shared")
    assert second.headers["X-BridgePool-Worker"] == holder
    assert second.json()["result"] == {"count": 2}
    # A restarted router (same port, empty table) does the same.
    router_a.kill(signal.SIGTERM)
    router_a = procs.router(pools, port=router_a.port)
    third = incr(router_a.url, "shared")
    assert third.headers["X-BridgePool-Worker"] == holder
    assert third.json()["result"] == {"count": 3}
    assert "X-BridgePool-Session-Rebound" not in third.headers


def test_a_worker_restarted_in_place_flags_its_sessions_as_rebound(procs: Processes) -> None:
    """A crashed worker whose container restarts keeps its name and address but
    not its sessions. The router sees the new process token on the next answer
    and says the state is gone (a rebound), instead of passing on a session
    that silently starts afresh; with two routers, the other one learns it from
    its health checks or its own next call."""
    worker = procs.worker()
    pools = procs.write_pools({"demo": pool_entry(worker.url)})
    router_a, router_b = procs.router(pools), procs.router(pools)
    assert incr(router_a.url, "kept").json()["result"] == {"count": 1}
    assert incr(router_b.url, "kept").json()["result"] == {"count": 2}

    worker.kill(signal.SIGKILL)
    procs.worker(port=worker.port)  # the same name, a new process

    for router in (router_a, router_b):
        answer = incr(router.url, "kept")
        assert answer.status_code == 200, answer.text
        if router is router_a:
            # The first call after the restart runs on a fresh session ...
            assert answer.json()["result"] == {"count": 1}
        # ... and each router says the old state is gone, once.
        assert answer.headers["X-BridgePool-Session-Rebound"] == "true"
        assert answer.headers["X-BridgePool-Session-Rebound-Reason"] == "worker_restarted"
        assert answer.headers["X-BridgePool-Previous-Worker"] == f"127.0.0.1:{worker.port}"
        again = incr(router.url, "kept")
        assert "X-BridgePool-Session-Rebound" not in again.headers
    assert incr(router_a.url, "kept").json()["result"] == {"count": 5}


def test_calls_taken_before_a_rebound_was_answered_are_flagged_too(procs: Processes) -> None:
    """A client with several calls in flight on a session learns of its lost
    state from each of them: every call the router took before it sent the
    first rebound answer carries the flag, not only the one that found the
    state gone. The calls taken after that answer carry none."""
    worker = procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url)}))
    assert incr(router.url, "s").json()["result"] == {"count": 1}

    worker.kill(signal.SIGKILL)
    procs.worker(port=worker.port)  # the same name, a new process
    slow_call = {"command": "sleep", "args": {"seconds": 1.0}}
    with ThreadPoolExecutor(1) as pool:
        # The first call finds the state gone and re-places the session ...
        in_session = f"{router.url}/v1/namespaces/default/pools/demo/sessions/s/execute"
        first = pool.submit(httpx.post, in_session, json=slow_call, timeout=10)
        wait_until(lambda: pool_state(router.url)["workers"][0]["in_flight"] == 1,
                   what="the first call running")  # fmt: skip
        # ... and a second call arrives while it runs: before the client could
        # have seen the first answer's flag.
        second = incr(router.url, "s")
        assert first.result().headers["X-BridgePool-Session-Rebound"] == "true"
    assert second.json()["result"] == {"count": 1}  # the old state is gone ...
    assert second.headers["X-BridgePool-Session-Rebound"] == "true"  # ... and it says so
    assert second.headers["X-BridgePool-Session-Rebound-Reason"] == "worker_restarted"
    assert second.headers["X-BridgePool-Previous-Worker"] == f"127.0.0.1:{worker.port}"
    third = incr(router.url, "s")
    assert third.json()["result"] == {"count": 2}
    assert "X-BridgePool-Session-Rebound" not in third.headers


async def test_killed_worker_under_load(procs: Processes) -> None:
    workers = [procs.worker(), procs.worker(), procs.worker()]
    routing = {"circuitBreaker": {"openSeconds": 30}}
    router = procs.router(
        procs.write_pools({"demo": pool_entry(*[w.url for w in workers], routing=routing)})
    )
    async with AsyncBridgePoolClient(router.url, "demo") as client:
        holders: dict[str, str | None] = {}
        for i in range(12):
            res = await client.execute_in_session(f"s{i}", "incr")
            holders[f"s{i}"] = res.worker
        victim_name = holders["s0"]
        assert victim_name is not None
        victim = next(w for w in workers if victim_name.endswith(f":{w.port}"))
        victim_sessions = [s for s, w in holders.items() if w == victim_name]

        stop = asyncio.Event()
        results: list[str] = []

        async def anonymous_load() -> None:
            while not stop.is_set():
                try:
                    res = await client.execute_anonymous(
                        "sleep", {"seconds": 0.01}, idempotent=True
                    )
                    results.append(res.worker or "")
                except Exception as exc:  # every failure is recorded, none swallowed
                    results.append(f"error: {exc!r}")

        load = [asyncio.create_task(anonymous_load()) for _ in range(8)]
        await asyncio.to_thread(wait_until, lambda: len(results) >= 40, what="calls flowing")
        victim.kill(signal.SIGKILL)
        # Enough calls after the kill that the last 20 checked below all started after it.
        killed_at = len(results)
        await asyncio.to_thread(
            wait_until, lambda: len(results) >= killed_at + 60, what="calls after the kill"
        )

        # Sticky calls on the dead worker: they may fail until its breaker opens;
        # then they move, flagged as rebound, with fresh state.
        rebound: dict[str, Any] = {}
        for session in victim_sessions:
            for _ in range(5):
                try:
                    res = await client.execute_in_session(session, "incr")
                except ConnectionFailedError:
                    continue
                rebound[session] = res
                break
        stop.set()
        await asyncio.gather(*load)

    errors = [r for r in results if r.startswith("error")]
    assert not errors, errors[:3]
    after_kill = results[len(results) // 2 :]
    assert victim_name not in after_kill[-20:]
    assert set(rebound) == set(victim_sessions)
    for res in rebound.values():
        assert res.rebound and res.rebound_reason == "worker_unreachable"
        assert res.worker != victim_name
        assert res.result == {"count": 1}  # the old state is gone
    async with httpx.AsyncClient(base_url=router.url) as http:
        state = (await http.get("/v1/namespaces/default/pools/demo")).json()
        metrics = (await http.get("/metrics")).text
    dead = next(w for w in state["workers"] if w["worker"] == victim_name)
    assert dead["breaker"] == "open" and dead["ready"] is False
    assert (
        'bridgepool_router_breaker_transitions_total{namespace="default",pool="demo",to="open"} 1.0'
        in metrics
    )


def test_queue_overflow_is_503_with_retry_after(procs: Processes) -> None:
    worker = procs.worker(capacity=1)
    routing = {"queue": {"maxLength": 1, "timeoutSeconds": 5}}
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url, routing=routing)}))

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=router.url, timeout=10) as http:
            calls = [
                http.post(
                    "/v1/namespaces/default/pools/demo/execute",
                    json={"command": "sleep", "args": {"seconds": 0.4}},
                )
                for _ in range(4)
            ]
            return await asyncio.gather(*calls)

    answers = asyncio.run(burst())
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 200, 503, 503]  # one running, one queued, two turned away
    for r in answers:
        if r.status_code == 503:
            assert r.headers["Retry-After"] == "1"
            error = r.json()["error"]
            assert (error["category"], error["type"], error["retryable"]) == (
                "resource",
                "queue_full",
                True,
            )


def test_routers_sharing_a_busy_worker_wait_for_its_slots_instead_of_failing(
    procs: Processes,
) -> None:
    """Each router keeps a worker to its capacity, but three routers offer it
    three times that. One surplus call waits in the worker's line; the worker
    turns the rest away (503 capacity_exceeded), and the routers wait and try
    again instead of passing the refusal on. The worker stays healthy in
    their eyes (its breaker does not count it)."""
    worker = procs.worker(capacity=1)
    pools = procs.write_pools({"demo": pool_entry(worker.url)})
    routers = [procs.router(pools) for _ in range(3)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30) as http:
            slow = {"command": "sleep", "args": {"seconds": 0.2}}
            calls = [
                http.post(
                    f"{routers[i % 3].url}/v1/namespaces/default/pools/demo/execute", json=slow
                )
                for i in range(9)
            ]
            return await asyncio.gather(*calls)

    answers = asyncio.run(burst())
    assert [r.status_code for r in answers] == [200] * 9, [r.text for r in answers]
    metrics = "".join(httpx.get(f"{r.url}/metrics").text for r in routers)
    # The worker did turn calls away: the routers retried them as busy ...
    assert (
        'bridgepool_router_retries_total{namespace="default",pool="demo",reason="busy"}' in metrics
    )
    # ... and no breaker counted it as failing.
    assert 'to="open"' not in metrics
    for router in routers:
        (state,) = pool_state(router.url)["workers"]
        assert state["breaker"] == "closed"


def test_a_router_with_one_call_is_not_starved_by_a_router_with_a_backlog(
    procs: Processes,
) -> None:
    """Router A has a backlog for a worker of one slot; router B sends one call
    meanwhile. B's call waits in the worker's line and runs next, instead of
    losing every race for the slot to A's next queued call until A's backlog
    is done."""
    worker = procs.worker(capacity=1)
    pools = procs.write_pools({"demo": pool_entry(worker.url)})
    busy, quiet = procs.router(pools), procs.router(pools)
    call = {"command": "overlap", "args": {"seconds": 0.2}}
    backlog = 8

    def queued_at(router: Proc) -> float:
        for line in httpx.get(f"{router.url}/metrics").text.splitlines():
            if line.startswith('bridgepool_router_queue_depth{namespace="default",pool="demo"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def execute(router: Proc) -> int:
        answer = httpx.post(
            f"{router.url}/v1/namespaces/default/pools/demo/execute", json=call, timeout=30
        )
        assert answer.status_code == 200, answer.text
        return int(answer.json()["result"]["turn"])

    with ThreadPoolExecutor(backlog) as pool:
        backlogged = [pool.submit(execute, busy) for _ in range(backlog)]
        # One of A's calls runs, several wait in A's own queue.
        wait_until(lambda: queued_at(busy) >= 3, what="router A's backlog")
        quiet_turn = execute(quiet)
        turns = [b.result() for b in backlogged]

    # B's call came while A still had at least three calls queued: it is
    # served before them, not after A's whole backlog.
    assert sum(turn > quiet_turn for turn in turns) >= 2, (quiet_turn, sorted(turns))


def test_router_processes_sharing_a_port_keep_a_worker_to_its_capacity(
    procs: Processes,
) -> None:
    """Two router processes on one port (``--reuse-port``, as in one pod), one
    address for the clients: every call is answered, and the worker, which each
    router keeps to its capacity, never runs more than that at once: the
    surplus it turns away is retried, never an error."""
    worker = procs.worker(capacity=2)
    pools = procs.write_pools({"demo": pool_entry(worker.url)})
    port = free_port()
    routers = [procs.router(pools, port=port, reuse_port=True) for _ in range(2)]
    assert all(r.popen.poll() is None for r in routers)  # both bound the port

    async def burst() -> list[httpx.Response]:
        call = {"command": "overlap", "args": {"seconds": 0.2}}

        async def one() -> httpx.Response:
            # A connection of its own, so the kernel spreads them over both routers.
            async with httpx.AsyncClient(timeout=30) as http:
                return await http.post(
                    f"{routers[0].url}/v1/namespaces/default/pools/demo/execute", json=call
                )

        return await asyncio.gather(*(one() for _ in range(12)))

    answers = asyncio.run(burst())
    assert [r.status_code for r in answers] == [200] * 12, [r.text for r in answers]
    assert max(r.json()["result"]["most"] for r in answers) <= 2


def test_queue_wait_times_out(procs: Processes) -> None:
    worker = procs.worker(capacity=1)
    routing = {"queue": {"maxLength": 5, "timeoutSeconds": 0.2}}
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url, routing=routing)}))

    async def two() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=router.url, timeout=10) as http:
            slow = {"command": "sleep", "args": {"seconds": 0.6}}
            return await asyncio.gather(
                http.post("/v1/namespaces/default/pools/demo/execute", json=slow),
                http.post("/v1/namespaces/default/pools/demo/execute", json=slow),
            )

    first, second = sorted(asyncio.run(two()), key=lambda r: r.status_code)
    assert first.status_code == 200
    assert second.status_code == 503 and second.json()["error"]["type"] == "queue_timeout"


def test_retries_are_bounded_by_the_budget(procs: Processes) -> None:
    worker = procs.worker()
    routing = {
        "retries": {
            "maxAttempts": 3,
            "budgetPercent": 0,
            "minRetriesPerSecond": 2,
            "baseBackoffSeconds": 0,
        },
        "circuitBreaker": {"failureThreshold": 100},
    }
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url, routing=routing)}))
    worker.kill()
    start = time.monotonic()
    codes = [incr(router.url, "s").status_code for _ in range(20)]
    elapsed = time.monotonic() - start
    assert codes == [502] * 20
    metrics = httpx.get(router.url + "/metrics").text

    def value(name: str) -> float:
        for line in metrics.splitlines():
            if line.startswith(name):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    retries = value(
        'bridgepool_router_retries_total{namespace="default",pool="demo",reason="connect"}'
    )
    denied = value('bridgepool_router_retry_budget_denied_total{namespace="default",pool="demo"}')
    # 2 retries per second of window; without the budget there would be 40.
    assert 1 <= retries <= 2 * (elapsed + 1)
    assert denied >= 20 - retries


def test_draining_worker_gets_no_new_sessions_but_keeps_its_own(procs: Processes) -> None:
    w1, w2 = procs.worker(), procs.worker()
    pools = procs.write_pools({"demo": pool_entry(w1.url, w2.url)})
    router = procs.router(pools)
    names = {f"127.0.0.1:{w.port}": w for w in (w1, w2)}
    holders = {s: incr(router.url, s).headers["X-BridgePool-Worker"] for s in "abcdef"}
    draining = holders["a"]
    procs.write_pools({"demo": pool_entry(w1.url, w2.url, draining=[names[draining].url])})
    wait_until(
        lambda: any(w["draining"] for w in pool_state(router.url)["workers"]), what="drain mark"
    )
    for session, holder in holders.items():
        r = incr(router.url, session)
        assert r.headers["X-BridgePool-Worker"] == holder
        assert r.json()["result"] == {"count": 2}
    for i in range(6):
        assert incr(router.url, f"new{i}").headers["X-BridgePool-Worker"] != draining
    # The draining worker leaves the pool: its sessions move, flagged, state lost.
    procs.write_pools({"demo": pool_entry(*[w.url for n, w in names.items() if n != draining])})
    wait_until(lambda: len(pool_state(router.url)["workers"]) == 1, what="worker removed")
    moved = incr(router.url, "a")
    assert moved.headers["X-BridgePool-Session-Rebound"] == "true"
    assert moved.headers["X-BridgePool-Session-Rebound-Reason"] == "worker_gone"
    assert moved.headers["X-BridgePool-Previous-Worker"] == draining
    assert moved.json()["result"] == {"count": 1}


def test_timeout_header_lowers_the_budget_and_is_forwarded(procs: Processes) -> None:
    worker = procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url)}))
    url = f"{router.url}/v1/namespaces/default/pools/demo/execute"
    seen = httpx.post(url, json={"command": "budget"}, headers={"X-BridgePool-Timeout": "2"})
    assert 1.5 < float(seen.json()["result"]["timeout"]) <= 2.0
    slow = {"command": "sleep", "args": {"seconds": 2}}
    r = httpx.post(url, json=slow, headers={"X-BridgePool-Timeout": "0.2"})
    assert r.status_code == 504
    assert r.json()["error"]["category"] == "timeout"
    # A caller cannot raise the pool's budget (10 s here).
    seen = httpx.post(url, json={"command": "budget"}, headers={"X-BridgePool-Timeout": "99"})
    assert float(seen.json()["result"]["timeout"]) <= 10.0


def test_sigterm_finishes_in_flight_calls_and_exits_zero(procs: Processes) -> None:
    worker = procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url)}))

    async def call_then_term() -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as http:
            call = asyncio.create_task(
                http.post(
                    f"{router.url}/v1/namespaces/default/pools/demo/execute",
                    json={"command": "sleep", "args": {"seconds": 0.5}},
                )
            )
            await asyncio.to_thread(
                wait_until,
                lambda: pool_state(router.url)["workers"][0]["in_flight"] == 1,
                what="the call in flight",
            )
            router.popen.send_signal(signal.SIGTERM)
            return await call

    answer = asyncio.run(call_then_term())
    assert answer.status_code == 200
    assert router.popen.wait(10) == 0


def test_sync_client(procs: Processes) -> None:
    worker = procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url)}))
    with BridgePoolClient(router.url, "demo") as client:
        first = client.execute_in_session("s", "incr")
        second = client.execute_in_session("s", "incr")
        assert (first.result, second.result) == ({"count": 1}, {"count": 2})
        assert second.worker == f"127.0.0.1:{worker.port}" and not second.rebound
        assert client.execute_anonymous("echo", {"x": 1}, idempotent=True).result == {"x": 1}
        with pytest.raises(HandlerError) as handler_error:
            client.execute_anonymous("fail")
        assert handler_error.value.status == 422
        client.delete_session("s")
        with pytest.raises(SessionError):
            client.delete_session("s")
    with BridgePoolClient(router.url, "missing") as client, pytest.raises(ResourceError) as err:
        client.execute_anonymous("ping")
    assert err.value.info.type == "unknown_pool" and err.value.status == 404


async def test_async_client(procs: Processes) -> None:
    worker = procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url)}))
    async with AsyncBridgePoolClient(router.url, "demo") as client:
        results = await asyncio.gather(*(client.execute_in_session("s", "incr") for _ in range(5)))
        assert sorted(r.result["count"] for r in results) == [1, 2, 3, 4, 5]
        with pytest.raises(HandlerError):
            await client.execute_anonymous("fail")
        await client.delete_session("s")
    async with AsyncBridgePoolClient("http://127.0.0.1:9", "demo") as client:
        with pytest.raises(ConnectionFailedError):
            await client.execute_anonymous("ping")


def test_a_pool_that_leaves_discovery_leaves_metrics(procs: Processes) -> None:
    stays, goes = procs.worker(), procs.worker(pool=PoolRef("default", "gone"))
    pools = {"demo": pool_entry(stays.url), "gone": pool_entry(goes.url)}
    router = procs.router(procs.write_pools(pools))
    for pool in ("demo", "gone"):
        assert incr(router.url, "s", pool).status_code == 200
        anonymous = httpx.post(
            f"{router.url}/v1/namespaces/default/pools/{pool}/execute", json={"command": "ping"}
        )
        assert anonymous.status_code == 200
    before = httpx.get(router.url + "/metrics").text
    assert 'pool="gone"' in before and f'worker="127.0.0.1:{goes.port}"' in before

    procs.write_pools({"demo": pools["demo"]})
    wait_until(
        lambda: (
            [p["pool"] for p in httpx.get(router.url + "/v1/pools").json()["pools"]] == ["demo"]
        ),
        what="pool removed",
    )
    after = httpx.get(router.url + "/metrics").text
    assert 'pool="gone"' not in after
    assert f'worker="127.0.0.1:{goes.port}"' not in after
    assert (
        'bridgepool_router_requests_total{namespace="default",outcome="success",pool="demo"} 2.0'
        in after
    )
    # Rare events' counters exist from the start, at 0, so dashboards read 0, not "no data".
    assert (
        'bridgepool_router_queue_rejected_total{namespace="default",pool="demo",reason="full"} 0.0'
        in after
    )
    assert (
        'bridgepool_router_retry_budget_denied_total{namespace="default",pool="demo"} 0.0' in after
    )


def test_panic_mode_is_counted_and_logged(procs: Processes) -> None:
    """With no eligible worker the router still sends calls to every
    non-draining one (panic mode); it says so in a metric and a log line."""
    worker = procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url)}))
    url = f"{router.url}/v1/namespaces/default/pools/demo/execute"

    def fault(kind: str) -> None:
        body = {"command": "fault", "args": {"kind": kind}}
        answer = httpx.post(f"{worker.url}/v1/execute", json=body, headers=procs.key_header())
        assert answer.status_code == 200

    def ready() -> bool:
        return bool(pool_state(router.url)["workers"][0]["ready"])

    def panic_calls() -> str:
        metrics = httpx.get(router.url + "/metrics").text
        (line,) = [
            m for m in metrics.splitlines() if m.startswith("bridgepool_router_panic_calls_total")
        ]
        return line.rsplit(" ", 1)[1]

    assert httpx.post(url, json={"command": "ping"}).status_code == 200
    assert panic_calls() == "0.0"
    fault("unhealthy")  # its /readyz fails while it serves
    wait_until(lambda: not ready(), what="the worker seen down")
    assert httpx.post(url, json={"command": "ping"}).status_code == 200
    assert panic_calls() == "1.0"
    fault("clear")
    wait_until(ready, what="the worker seen up")
    assert httpx.post(url, json={"command": "ping"}).status_code == 200
    assert panic_calls() == "1.0"
    log = (procs.tmp / f"router-{router.port}.log").read_text()
    changes = [json.loads(line) for line in log.splitlines() if "panic mode" in line]
    assert [(c["message"], c["level"], c["panic"], c["pick"]) for c in changes] == [
        ("pool panic mode changed", "warning", True, "call"),
        ("pool panic mode changed", "info", False, "call"),
    ]

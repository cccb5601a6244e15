"""A session handed over with its state (a drain's move) is followed by the
router to its new holder: no failed call, no rebound, the same state."""

from __future__ import annotations

import asyncio
import signal
import threading

import aiohttp
import httpx

from bridgepool.protocol import HEADER_SESSION_REBOUND, HEADER_WORKER
from bridgepool_operator.drain import Target
from bridgepool_operator.mover import move_off

from .conftest import Processes, wait_until
from .test_router_processes import incr, pool_entry


def test_the_router_follows_a_session_moved_with_its_state(procs: Processes) -> None:
    a, b = procs.worker(), procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(a.url, b.url)}))
    # Find a session whose home is a, and count in it.
    session = next(f"s-{n}" for n in range(100) if incr(router.url, f"s-{n}").headers[
        HEADER_WORKER].endswith(f":{a.port}"))  # fmt: skip
    answers: list[httpx.Response] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            answers.append(incr(router.url, session))

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:

        async def move() -> None:
            async with aiohttp.ClientSession() as http:
                target = (Target("b", b.url),)
                report = await move_off(http, a.url, target, budget_seconds=30, step_timeout=10)
                assert session in report.moved, report

        while len(answers) < 5:  # the calls flow before the move
            threading.Event().wait(0.01)
        asyncio.run(move())
        moved_at = len(answers)
        while len(answers) < moved_at + 5:  # and after it
            threading.Event().wait(0.01)
    finally:
        stop.set()
        caller.join(30)

    failed = [r.text for r in answers if r.status_code != 200]
    assert failed == [], failed[:3]
    assert not any(HEADER_SESSION_REBOUND in r.headers for r in answers)
    # One counter, continued across the move: its state came along.
    counts = [r.json()["result"]["count"] for r in answers]
    assert counts == list(range(2, 2 + len(counts)))
    assert answers[-1].headers[HEADER_WORKER].endswith(f":{b.port}")


def test_a_router_whose_binding_names_the_gone_worker_follows_the_move_without_a_rebound(
    procs: Processes,
) -> None:
    """Router B knew the session on worker a; the session moved to b while only
    router A carried its calls; then a left. B finds the session on b, marked
    as arrived by a move: its state is intact, so B's caller hears of no loss."""
    a, b = procs.worker(), procs.worker()
    both = procs.write_pools({"demo": pool_entry(a.url, b.url)})
    router_a, router_b = procs.router(both), procs.router(both)
    session = next(f"s-{n}" for n in range(100) if incr(router_a.url, f"s-{n}").headers[
        HEADER_WORKER].endswith(f":{a.port}"))  # fmt: skip
    assert incr(router_b.url, session).headers[HEADER_WORKER].endswith(f":{a.port}")

    async def move() -> None:
        async with aiohttp.ClientSession() as http:
            target = (Target("b", b.url),)
            report = await move_off(http, a.url, target, budget_seconds=30, step_timeout=10)
            assert session in report.moved, report

    asyncio.run(move())
    assert incr(router_a.url, session).json()["result"] == {"count": 3}
    procs.write_pools({"demo": pool_entry(b.url)})  # a leaves

    def b_alone() -> bool:
        workers = httpx.get(f"{router_b.url}/v1/pools/demo").json()["workers"]
        return [w["worker"] for w in workers] == [f"127.0.0.1:{b.port}"]

    wait_until(b_alone, what="router B to drop worker a")
    answer = incr(router_b.url, session)
    assert answer.status_code == 200, answer.text
    assert HEADER_SESSION_REBOUND not in answer.headers
    assert answer.json()["result"] == {"count": 4}


def test_a_router_whose_old_holder_has_exited_finds_the_moved_session(procs: Processes) -> None:
    """The old worker exits right after its sessions moved, while router B
    still lists it and still binds the session there: B's call cannot connect,
    and B finds the session where it moved, without a rebound."""
    a, b = procs.worker(), procs.worker()
    both = procs.write_pools({"demo": pool_entry(a.url, b.url)})
    router_a, router_b = procs.router(both), procs.router(both)
    session = next(f"s-{n}" for n in range(100) if incr(router_a.url, f"s-{n}").headers[
        HEADER_WORKER].endswith(f":{a.port}"))  # fmt: skip
    assert incr(router_b.url, session).headers[HEADER_WORKER].endswith(f":{a.port}")

    async def move() -> None:
        async with aiohttp.ClientSession() as http:
            target = (Target("b", b.url),)
            report = await move_off(http, a.url, target, budget_seconds=30, step_timeout=10)
            assert session in report.moved, report

    asyncio.run(move())
    a.kill(signal.SIGTERM)  # exits; the routers still list it
    answer = incr(router_b.url, session)
    assert answer.status_code == 200, answer.text
    assert HEADER_SESSION_REBOUND not in answer.headers
    assert answer.json()["result"] == {"count": 3}
    assert answer.headers[HEADER_WORKER].endswith(f":{b.port}")

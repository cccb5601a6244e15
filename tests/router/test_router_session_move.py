"""A session handed over with its state (a drain's move) is followed by the
router to its new holder: no failed call, no rebound, the same state."""

from __future__ import annotations

import asyncio
import signal
import threading

import aiohttp
import httpx

from benchmarks.review_server import token_of
from bridgepool.credentials import Keys
from bridgepool.moves.mover import move_off
from bridgepool.placement import Target
from bridgepool.protocol import HEADER_SESSION_REBOUND, HEADER_WORKER
from bridgepool.worker_http import WorkerHttp

from .conftest import Proc, Processes, wait_until
from .test_router_processes import incr, pool_entry


def homed_on(router: Proc, worker: Proc) -> str:
    """A session whose home is ``worker``, counted once through ``router``."""
    return next(
        session
        for session in (f"s-{n}" for n in range(100))
        if incr(router.url, session).headers[HEADER_WORKER].endswith(f":{worker.port}")
    )


def move_all(procs: Processes, source: Proc, target: Proc) -> set[str]:
    """The operator's mover, with the pool's key, takes every session of
    ``source`` to ``target``."""

    async def move() -> set[str]:
        async with aiohttp.ClientSession() as session:
            report = await move_off(
                WorkerHttp(session, Keys(procs.key())),
                source.url,
                (Target("target", target.url),),
                budget_seconds=30,
                step_timeout=10,
            )
            return set(report.moved)

    return asyncio.run(move())


def two_routers_bound_to_a(procs: Processes) -> tuple[Proc, Proc, Proc, Proc, str]:
    """Workers a and b, routers A and B, and a session on a that both routers
    have carried (counted to 2)."""
    a, b = procs.worker(), procs.worker()
    both = procs.write_pools({"demo": pool_entry(a.url, b.url)})
    router_a, router_b = procs.router(both), procs.router(both)
    session = homed_on(router_a, a)
    assert incr(router_b.url, session).headers[HEADER_WORKER].endswith(f":{a.port}")
    return a, b, router_a, router_b, session


def test_the_router_follows_a_session_moved_with_its_state(procs: Processes) -> None:
    a, b = procs.worker(), procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(a.url, b.url)}))
    session = homed_on(router, a)
    answers: list[httpx.Response] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            answers.append(incr(router.url, session))

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        wait_until(lambda: len(answers) >= 5, what="calls before the move")
        assert move_all(procs, a, b) == {session}
        moved_at = len(answers)
        wait_until(lambda: len(answers) >= moved_at + 5, what="calls after the move")
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
    a, b, router_a, router_b, session = two_routers_bound_to_a(procs)
    assert move_all(procs, a, b) == {session}
    assert incr(router_a.url, session).json()["result"] == {"count": 3}
    procs.write_pools({"demo": pool_entry(b.url)})  # a leaves

    def b_alone() -> bool:
        workers = httpx.get(f"{router_b.url}/v1/namespaces/default/pools/demo").json()["workers"]
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
    a, b, _, router_b, session = two_routers_bound_to_a(procs)
    assert move_all(procs, a, b) == {session}
    a.kill(signal.SIGTERM)  # exits; the routers still list it
    answer = incr(router_b.url, session)
    assert answer.status_code == 200, answer.text
    assert HEADER_SESSION_REBOUND not in answer.headers
    assert answer.json()["result"] == {"count": 3}
    assert answer.headers[HEADER_WORKER].endswith(f":{b.port}")


def test_a_session_moves_with_its_owner(procs: Processes) -> None:
    """With callers authenticated, two identities' sessions of one id are two
    sessions; a drain moves both, and each goes on with its own state, still
    its owner's alone (the owner is in the key the session moves under)."""
    kubeconfig = procs.review_server()
    a, b = procs.worker(), procs.worker()
    pools = procs.write_pools({"demo": pool_entry(a.url)})
    router = procs.router(pools, kubeconfig=kubeconfig)
    pool = f"{router.url}/v1/namespaces/default/pools/demo"

    def as_(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_of(name)}"}

    def count(name: str) -> httpx.Response:
        return httpx.post(f"{pool}/sessions/s/execute", json={"command": "incr"}, headers=as_(name))

    assert [count(n).json()["result"]["count"] for n in ("alice", "alice", "bob")] == [1, 2, 1]
    procs.write_pools({"demo": pool_entry(a.url, b.url)})
    wait_until(
        lambda: len(httpx.get(pool, headers=as_("alice")).json()["workers"]) == 2,
        what="the router to list b",
    )
    moved = move_all(procs, a, b)
    assert len(moved) == 2 and "s" not in moved  # the two owners' keys, not the bare id
    for name, expected in (("alice", 3), ("bob", 2), ("alice", 4)):
        answer = count(name)
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"] == {"count": expected}, name
        assert answer.headers[HEADER_WORKER].endswith(f":{b.port}")
        assert HEADER_SESSION_REBOUND not in answer.headers

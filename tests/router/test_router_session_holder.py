"""One session, one worker, across routers: two router processes in front of
the same worker processes agree on where a session lives after its worker
restarts in place, and a client learns of every loss of state from the
rebound flag (never from a program that is suddenly missing)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridgepool.protocol import HEADER_WORKER
from tests.router.conftest import FAST_ROUTING, Proc, Processes, wait_until
from tests.router.test_router_processes import incr
from tests.router.test_router_session_move import homed_on

SESSION = "split"
# A failed call opens a worker's breaker at once: the router that sees the
# worker die moves the session on its next attempt.
ROUTING: dict[str, Any] = {**FAST_ROUTING, "circuitBreaker": {"failureThreshold": 1}}
# Checks so rare that, after its first, the router learns of a restart only
# from a call's answer: its binding to the restarted worker stays stale.
RARE_CHECKS: dict[str, Any] = {**ROUTING, "health": {**ROUTING["health"], "intervalSeconds": 3600}}


class ProgramClient:
    """A client of one session that keeps a program in it, as the chaos load
    does: it creates the program, runs it, and creates it again whenever an
    answer says the session's state was lost (the rebound flag)."""

    def __init__(self) -> None:
        self.program: str | None = None
        self.answers: list[httpx.Response] = []

    def call(self, router: Proc) -> httpx.Response:
        url = f"{router.url}/v1/namespaces/default/pools/demo/sessions/{SESSION}/execute"
        creating = self.program is None
        if creating:
            body: dict[str, Any] = {
                "command": "create_program",
                "args": {"signature": "question -> answer"},
            }
        else:
            body = {
                "command": "execute_program",
                "args": {"program_id": self.program, "inputs": {"question": "2+2?"}},
            }
        answer = httpx.post(url, json=body, timeout=10)
        self.answers.append(answer)
        if answer.headers.get("X-BridgePool-Session-Rebound") == "true" and not creating:
            self.program = None  # the old state, and its program, are gone
        if answer.status_code == 200 and creating:
            self.program = answer.json()["result"]["program_id"]
        return answer

    def failures_without_rebound(self) -> list[str]:
        return [
            f"{a.status_code} {a.text}"
            for a in self.answers
            if a.status_code != 200 and a.headers.get("X-BridgePool-Session-Rebound") != "true"
        ]


def holders(procs: Processes, workers: list[Proc]) -> list[str]:
    """The workers that hold the session, asked directly (with the pool's key)."""
    found = []
    for worker in workers:
        answer = httpx.get(f"{worker.url}/v1/sessions", headers=procs.key_header())
        listing = answer.json()["sessions"]
        if any(s["session_id"] == SESSION for s in listing):
            found.append(f"127.0.0.1:{worker.port}")
    return found


def worker_ready_in(router: Proc, worker: str) -> bool:
    state = httpx.get(f"{router.url}/v1/namespaces/default/pools/demo").json()
    (seen,) = [w for w in state["workers"] if w["worker"] == worker]
    return bool(seen["ready"])


def pools_file(procs: Processes, workers: list[Proc], routing: dict[str, Any], name: str) -> Path:
    entry = {"urls": [w.url for w in workers], "routing": routing}
    return procs.write_pools({"demo": entry}, name=name)


@pytest.mark.parametrize("router_b_learns_from", ["its own call", "its health checks"])
def test_routers_follow_one_holder_after_a_worker_restarts_in_place(
    procs: Processes, router_b_learns_from: str
) -> None:
    """Router A sees the session's worker die and moves the session (the client
    re-creates its program on the new worker); the worker restarts in place;
    router B, whose binding still names the restarted worker, must follow the
    session to where A put it instead of starting it afresh elsewhere."""
    workers = [procs.worker(), procs.worker()]
    by_name = {f"127.0.0.1:{w.port}": w for w in workers}
    stale = router_b_learns_from == "its own call"
    router_a = procs.router(pools_file(procs, workers, ROUTING, "a.json"))
    router_b = procs.router(pools_file(procs, workers, RARE_CHECKS if stale else ROUTING, "b.json"))
    client = ProgramClient()

    first = client.call(router_a)
    assert first.status_code == 200, first.text
    old = first.headers["X-BridgePool-Worker"]
    (new,) = set(by_name) - {old}
    assert client.call(router_b).headers["X-BridgePool-Worker"] == old  # B found it
    if not stale:
        # Another session of B's lives on the other worker, so that B, placing
        # the session afresh, would pick the restarted (emptier) worker.
        # (New sessions go to their home worker: take one whose home is there.)
        placed = (
            httpx.post(
                f"{router_b.url}/v1/namespaces/default/pools/demo/sessions/other-{n}/execute",
                json={"command": "incr"},
            ).headers["X-BridgePool-Worker"]
            for n in range(64)
        )
        assert new in placed

    victim = by_name[old]
    victim.kill(signal.SIGKILL)
    if not stale:
        wait_until(lambda: not worker_ready_in(router_b, old), what="router B sees it down")
    # Router A moves the session; its client starts it again on the new worker.
    wait_until(lambda: client.call(router_a).status_code == 200, what="A serves the session")
    assert client.answers[-1].headers["X-BridgePool-Worker"] == new
    assert client.program is not None and client.call(router_a).status_code == 200

    procs.worker(port=victim.port)  # the same name, a new process without the session
    if not stale:
        wait_until(lambda: worker_ready_in(router_b, old), what="router B sees it restarted")

    served = set()
    for router in (router_b, router_a, router_b, router_a, router_b, router_a):
        answer = client.call(router)
        served.add(answer.headers.get("X-BridgePool-Worker"))
    assert client.failures_without_rebound() == []
    assert served == {new}
    assert holders(procs, workers) == [new]
    # The restarted process ran none of the session's calls: a router whose
    # view of it was stale was told so (412) before anything ran.
    ran = httpx.get(f"{victim.url}/metrics", headers=procs.key_header()).text
    assert 'command="execute_program"' not in ran and 'command="create_program"' not in ran
    if stale:
        assert 'bridgepool_worker_rejected_total{reason="restarted"} 1.0' in ran


def test_a_worker_restarted_after_its_breaker_opened_is_back_without_waiting_it_out(
    procs: Processes,
) -> None:
    """The breaker opened on the old process's failures (as a crash's cut-off
    calls open it). Once the router sees the new process, by its health checks,
    the breaker lets probes through at once and closes on their success: the
    worker is not kept out for the breaker's open time (60 s)."""
    workers = [procs.worker(), procs.worker()]
    router = procs.router(pools_file(procs, workers, FAST_ROUTING, "pools.json"))
    victim = workers[0]
    name = f"127.0.0.1:{victim.port}"
    session = homed_on(router, victim)
    failing = {"command": "fault", "args": {"kind": "error"}}
    url = f"{router.url}/v1/namespaces/default/pools/demo/sessions/{session}/execute"
    for _ in range(5):  # the breaker's default failure threshold
        assert httpx.post(url, json=failing).status_code == 500

    def breaker() -> str:
        state = httpx.get(f"{router.url}/v1/namespaces/default/pools/demo").json()
        (seen,) = [w for w in state["workers"] if w["worker"] == name]
        return str(seen["breaker"])

    assert breaker() == "open"
    victim.kill(signal.SIGKILL)
    procs.worker(port=victim.port)  # the same name, a new process

    wait_until(lambda: breaker() != "open", what="the breaker to let the new process be probed")
    on_new = homed_on(router, victim)  # calls reach the restarted worker again

    def closed_after_a_call() -> bool:
        assert incr(router.url, on_new).headers[HEADER_WORKER] == name
        return breaker() == "closed"

    wait_until(closed_after_a_call, what="the probes to close the breaker")

"""The router and keyed workers: it shows each pool's key (derived from the
release keys), goes on through a rotation, gives a session frozen past the
move wait its 503 at once, and fails a call whose session moved to a worker
it does not know instead of waiting out the call's budget."""

from __future__ import annotations

from typing import Any

import httpx

from bridgepool.credentials import Keys, new_key, pool_key_dir, read_keys, write_keys
from bridgepool.names import PoolRef
from bridgepool.protocol import HEADER_WORKER

from .conftest import DEMO, Proc, Processes, wait_until
from .test_router_processes import incr, pool_entry


def step(worker: Proc, headers: dict[str, str], session: str, name: str, body: Any) -> Any:
    """One move step on ``worker`` (as the operator's mover sends it)."""
    answer = httpx.post(
        f"{worker.url}/v1/sessions/{session}/{name}", json=body, headers=headers, timeout=10
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_each_pool_is_called_with_its_own_key_and_a_worker_refuses_the_other_pools(
    procs: Processes,
) -> None:
    team_a, team_b = PoolRef("team-a", "example"), PoolRef("team-b", "example")
    a, b = procs.worker(pool=team_a), procs.worker(pool=team_b)
    router = procs.router(
        procs.write_pools(
            {"team-a/example": pool_entry(a.url), "team-b/example": pool_entry(b.url)}
        )
    )
    for ref, worker in ((team_a, a), (team_b, b)):
        answer = httpx.post(
            f"{router.url}/v1/namespaces/{ref.namespace}/pools/{ref.name}/execute",
            json={"command": "ping"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers[HEADER_WORKER].endswith(f":{worker.port}")
    # One pool's key opens none of the other pool's workers.
    refused = httpx.get(f"{b.url}/v1/sessions", headers=procs.key_header(team_a))
    assert refused.status_code == 401
    assert refused.json()["error"]["type"] == "unauthenticated"


def test_calls_go_on_through_a_rotation_of_the_release_keys(procs: Processes) -> None:
    """The router's keys change before the worker's (their Secrets update at
    different times): a call refused with the new key goes again with the
    previous one; then the worker has the new keys too."""
    worker = procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url)}))
    assert incr(router.url, "s").status_code == 200
    old = read_keys(procs.release_keys)
    rotated = Keys(new_key(), previous=old.current)
    write_keys(procs.release_keys, rotated)  # the router's side first
    worker_keys = procs.tmp / "keys-default-demo"

    def old_key_refused() -> bool:
        # The router has re-read its keys once the new pool key is what it sends.
        headers = procs.key_header(DEMO)
        return httpx.get(f"{worker.url}/v1/sessions", headers=headers).status_code == 401

    wait_until(old_key_refused, what="the rotated key to be refused by the worker")
    counts = [incr(router.url, "s").json()["result"]["count"] for _ in range(3)]
    pool_key_dir(rotated, DEMO, worker_keys)  # now the worker's side

    def new_key_taken() -> bool:
        return httpx.get(f"{worker.url}/v1/sessions", headers=procs.key_header(DEMO)).is_success

    wait_until(new_key_taken, what="the worker to take the new key")
    counts += [incr(router.url, "s").json()["result"]["count"] for _ in range(3)]
    assert counts == [2, 3, 4, 5, 6, 7]


def test_a_session_frozen_past_the_move_wait_gets_503_while_still_frozen(
    procs: Processes,
) -> None:
    worker = procs.worker(env={"BRIDGEPOOL_WORKER_MOVE_WAIT_SECONDS": "0.3"})
    router = procs.router(procs.write_pools({"demo": pool_entry(worker.url)}))
    assert incr(router.url, "frozen").status_code == 200
    step(worker, procs.key_header(), "frozen", "export", {})  # frozen for 30 s

    answer = incr(router.url, "frozen")
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert (error["type"], error["retryable"]) == ("session_moving", True)
    # Answered within the move wait, not after the freeze: it is frozen still.
    moves = httpx.get(f"{worker.url}/v1/moves", headers=procs.key_header()).json()["moves"]
    assert [(m["session_id"], m["state"]) for m in moves] == [("frozen", "frozen")]


def test_a_session_moved_to_a_worker_the_router_does_not_know_fails_at_once(
    procs: Processes,
) -> None:
    """The session left for a peer this router has never discovered: the call
    fails with 502 ``unknown_holder`` naming it, logged, not a 504 after the
    call's whole budget."""
    a, elsewhere = procs.worker(), procs.worker()
    router = procs.router(procs.write_pools({"demo": pool_entry(a.url)}))
    assert incr(router.url, "s").status_code == 200
    key = procs.key_header()
    exported = step(a, key, "s", "export", {})
    step(elsewhere, key, "s", "import", exported["envelope"])
    move_id = exported["move"]["move_id"]
    step(a, key, "s", "commit", {"move_id": move_id, "holder_url": elsewhere.url})

    answer = httpx.post(
        f"{router.url}/v1/pools/demo/sessions/s/execute",
        json={"command": "incr"},
        headers={"X-BridgePool-Timeout": "60"},
        timeout=70,
    )
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    assert error["type"] == "unknown_holder"
    assert error["context"]["holder_url"] == elsewhere.url
    log = (procs.tmp / f"router-{router.port}.log").read_text()
    assert "session moved to a worker this router does not know" in log

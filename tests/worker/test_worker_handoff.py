"""A worker deleted from outside (SIGTERM from the kubelet) with
``handoff_sessions`` on keeps serving until its sessions have moved, then
exits; without a mover it exits when its grace period ends."""

from __future__ import annotations

import asyncio
import signal

import aiohttp

from bridgepool.moves.mover import move_off
from bridgepool.placement import Target
from bridgepool.worker_http import WorkerHttp

from .conftest import Workers
from .test_worker_processes import session_ids, wait_for

HANDOFF = {"BRIDGEPOOL_WORKER_HANDOFF_SESSIONS": "true", "BRIDGEPOOL_WORKER_GRACE_SECONDS": "60"}


def test_a_terminating_worker_waits_for_its_sessions_to_move_then_exits(
    workers: Workers,
) -> None:
    leaving, staying = workers.start(env=HANDOFF), workers.start()
    leaving.result("ping", session_id="kept")
    leaving.signal(signal.SIGTERM)
    # Still serving the session it holds, though it takes no new ones.
    wait_for(lambda: leaving.get("/readyz").status_code == 503)
    assert leaving.result("ping", session_id="kept")["pong"] is True
    refused = leaving.call("ping", session_id="new")
    assert refused.status_code == 503
    # No caller keeps a connection to a worker on its way out.
    assert refused.headers["Connection"] == "close"
    assert leaving.popen.poll() is None

    async def move() -> None:
        async with aiohttp.ClientSession() as session:
            http = WorkerHttp(session, workers.keys)  # the operator's, with the pool's keys
            target = (Target("staying", staying.url),)
            report = await move_off(http, leaving.url, target, budget_seconds=30, step_timeout=10)
            assert set(report.moved) == {"kept"}

    asyncio.run(move())
    assert leaving.wait(timeout=30) == 0
    assert session_ids(staying) == {"kept"}


def test_without_a_mover_it_exits_when_the_grace_period_ends(workers: Workers) -> None:
    leaving = workers.start(env={**HANDOFF, "BRIDGEPOOL_WORKER_GRACE_SECONDS": "1"})
    leaving.result("ping", session_id="kept")
    leaving.signal(signal.SIGTERM)
    assert leaving.wait(timeout=30) == 0
    assert "sessions not moved" in leaving.logs()


def test_sigint_stops_without_waiting_for_a_handoff(workers: Workers) -> None:
    """SIGINT (the whole pool stopping: nobody will take the sessions) drains
    the calls in flight and exits cleanly, without waiting for a mover."""
    leaving = workers.start(env={**HANDOFF, "BRIDGEPOOL_WORKER_GRACE_SECONDS": "60"})
    leaving.result("ping", session_id="kept")
    leaving.signal(signal.SIGINT)
    assert leaving.wait(timeout=30) == 0
    assert "sessions not moved" not in leaving.logs()


def test_a_drained_worker_lingers_answering_then_a_second_signal_ends_it(
    workers: Workers,
) -> None:
    """Drained (nothing in flight, nothing to hand off), a worker keeps
    answering for its linger, every answer closing its connection, so a
    router that still calls it gets an answer rather than a reset."""
    lingering = workers.start(env={"BRIDGEPOOL_WORKER_EXIT_LINGER_SECONDS": "60"})
    lingering.signal(signal.SIGTERM)
    wait_for(lambda: lingering.get("/readyz").status_code == 503)
    answered = lingering.call("ping")
    assert answered.status_code == 200
    assert answered.headers["Connection"] == "close"
    assert lingering.popen.poll() is None
    lingering.signal(signal.SIGTERM)
    assert lingering.wait(timeout=30) == 0

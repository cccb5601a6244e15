"""Worker behaviour that needs its own process: session expiry and cap, the
capacity limit, fault injection, recycling, SIGTERM drain."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from bridgepool.protocol import (
    HEADER_TIMEOUT,
    HEADER_WAIT_FOR_SLOT,
    Readiness,
    WorkerState,
    WorkerStats,
)

from .conftest import Worker, Workers

FAULTS = {"BRIDGEPOOL_FAULTS_ENABLED": "1"}


def session_ids(worker: Worker) -> set[str]:
    return {s["session_id"] for s in worker.get("/v1/sessions").json()["sessions"]}


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def test_sessions_expire_when_idle_and_used_ones_stay(workers: Workers) -> None:
    worker = workers.start(env={"BRIDGEPOOL_WORKER_SESSION_TTL_SECONDS": "0.6"})
    worker.result("ping", session_id="idle")
    worker.result("ping", session_id="busy")
    assert session_ids(worker) == {"idle", "busy"}

    for _ in range(5):  # keep "busy" in use past "idle"'s expiry
        time.sleep(0.2)
        worker.result("ping", session_id="busy")
    assert session_ids(worker) == {"busy"}
    wait_for(lambda: session_ids(worker) == set())
    metrics = worker.get("/metrics").text
    assert 'bridgepool_worker_sessions_closed_total{reason="expired"} 2.0' in metrics


def test_session_cap_refuses_new_sessions_with_a_retryable_resource_error(
    workers: Workers,
) -> None:
    worker = workers.start(env={"BRIDGEPOOL_WORKER_MAX_SESSIONS": "2"})
    worker.result("ping", session_id="a")
    worker.result("ping", session_id="b")

    refused = worker.call("ping", session_id="c")
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert (error["category"], error["type"], error["retryable"]) == (
        "resource",
        "session_limit",
        True,
    )
    worker.result("ping", session_id="a")  # existing sessions keep working
    worker.result("ping")  # and anonymous calls
    assert worker.client.delete("/v1/sessions/a").status_code == 200
    worker.result("ping", session_id="c")


def test_calls_beyond_capacity_are_refused_at_once(workers: Workers) -> None:
    worker = workers.start(
        env={**FAULTS, "BRIDGEPOOL_WORKER_CAPACITY": "2", "BRIDGEPOOL_WORKER_LOG_LEVEL": "debug"}
    )

    def slow() -> httpx.Response:
        return worker.call("fault", {"kind": "slow", "seconds": 0.8})

    with ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(slow) for _ in range(2)]
        wait_for(lambda: worker.get("/v1/stats").json()["in_flight"] == 2)
        stats = WorkerStats.model_validate(worker.get("/v1/stats").json())
        assert stats.state == WorkerState.BUSY
        assert worker.get("/readyz").status_code == 200  # busy is still ready

        refused = worker.call("ping")
        assert not any(c.done() for c in calls)  # answered at once, not after the slow calls
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert (error["category"], error["type"], error["retryable"]) == (
            "resource",
            "capacity_exceeded",
            True,
        )
        assert all(c.result().status_code == 200 for c in calls)
    assert worker.get("/v1/stats").json()["state"] == "ready"
    assert 'bridgepool_worker_rejected_total{reason="capacity"} 1.0' in worker.get("/metrics").text
    # Every transition is a log line with its reason and the time in the previous state.
    busy = [line for line in worker.logs().splitlines() if '"to": "busy"' in line]
    assert busy and '"reason": "all call slots in use"' in busy[0]
    assert '"seconds_in_previous"' in busy[0]


def test_calls_that_may_wait_line_up_for_a_slot_and_the_line_is_short(
    workers: Workers,
) -> None:
    """With every slot taken, a call sent with the wait-for-slot header waits in
    line and runs once a slot frees; the line holds as many calls as there are
    slots; past it, and without the header, the answer is 503 at once."""
    worker = workers.start(env={**FAULTS, "BRIDGEPOOL_WORKER_CAPACITY": "2"})
    may_wait = {HEADER_WAIT_FOR_SLOT: "true"}

    def waiting() -> float:
        for line in worker.get("/metrics").text.splitlines():
            if line.startswith("bridgepool_worker_calls_waiting_for_slot "):
                return float(line.split()[1])
        raise AssertionError("no bridgepool_worker_calls_waiting_for_slot in /metrics")

    with ThreadPoolExecutor(4) as pool:
        holders = [
            pool.submit(worker.call, "fault", {"kind": "slow", "seconds": 0.6}) for _ in range(2)
        ]
        wait_for(lambda: worker.get("/v1/stats").json()["in_flight"] == 2)
        waiters = []
        for expected in (1, 2):
            waiters.append(pool.submit(worker.call, "ping", headers=may_wait))
            wait_for(lambda expected=expected: waiting() == expected)  # type: ignore[misc]

        past_the_line = worker.call("ping", headers=may_wait)
        without_header = worker.call("ping")
        for refused in (past_the_line, without_header):
            assert refused.status_code == 503
            assert refused.json()["error"]["type"] == "capacity_exceeded"
        assert [h.result().status_code for h in holders] == [200, 200]
        assert [w.result().status_code for w in waiters] == [200, 200]
    assert waiting() == 0
    stats = worker.get("/v1/stats").json()
    assert (stats["in_flight"], stats["state"]) == (0, "ready")


def test_a_call_waiting_for_a_slot_gets_503_when_its_budget_runs_out(workers: Workers) -> None:
    worker = workers.start(env={**FAULTS, "BRIDGEPOOL_WORKER_CAPACITY": "1"})
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(worker.call, "fault", {"kind": "slow", "seconds": 1.5})
        wait_for(lambda: worker.get("/v1/stats").json()["in_flight"] == 1)
        late = worker.call("ping", headers={HEADER_WAIT_FOR_SLOT: "true", HEADER_TIMEOUT: "0.2"})
        assert late.status_code == 503
        assert late.json()["error"]["type"] == "capacity_exceeded"
        assert holder.result().status_code == 200
    # The slot it never got was not lost: the worker has its one slot back.
    worker.result("ping", headers={HEADER_WAIT_FOR_SLOT: "true"})
    assert worker.get("/v1/stats").json()["in_flight"] == 0


def test_fault_command_is_unknown_unless_enabled(workers: Workers) -> None:
    worker = workers.start()
    response = worker.call("fault", {"kind": "error"})
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "unknown_command"
    sleepy = worker.call("ping", {"sleep": 0.1})
    assert sleepy.status_code == 400


def test_injected_faults(shared_worker: Worker) -> None:
    slow = shared_worker.call("fault", {"kind": "slow", "seconds": 0.2})
    assert slow.status_code == 200 and slow.json()["result"]["slept"] == 0.2

    error = shared_worker.call("fault", {"kind": "error"})
    assert error.status_code == 500
    assert error.json()["error"]["category"] == "system"

    hang = shared_worker.call("fault", {"kind": "hang"}, headers={HEADER_TIMEOUT: "0.3"})
    assert hang.status_code == 504
    assert hang.json()["error"]["category"] == "timeout"
    assert hang.json()["error"]["context"]["timeout_seconds"] == 0.3

    bad = shared_worker.call("fault", {"kind": "explode"})
    assert bad.status_code == 400 and "kind" in bad.json()["error"]["message"]

    unhealthy = shared_worker.call("fault", {"kind": "unhealthy", "seconds": 0.4})
    assert unhealthy.status_code == 200
    readyz = shared_worker.get("/readyz")
    assert readyz.status_code == 503
    assert Readiness.model_validate(readyz.json()).state == WorkerState.DEGRADED
    assert shared_worker.get("/v1/stats").json()["state"] == "degraded"
    assert 'bridgepool_worker_state{state="degraded"} 1.0' in shared_worker.get("/metrics").text
    shared_worker.result("ping")  # a degraded worker still answers calls
    wait_for(lambda: shared_worker.get("/readyz").status_code == 200)

    shared_worker.result("fault", {"kind": "unhealthy"})  # until cleared
    time.sleep(0.2)
    assert shared_worker.get("/readyz").status_code == 503
    shared_worker.result("fault", {"kind": "clear"})
    assert shared_worker.get("/readyz").status_code == 200


def test_crash_fault_ends_the_process(workers: Workers) -> None:
    worker = workers.start(env=FAULTS)
    with pytest.raises(httpx.TransportError):
        worker.call("fault", {"kind": "crash"})
    assert worker.wait(5) == 70


def test_timeout_header_may_only_lower_the_call_timeout(workers: Workers) -> None:
    worker = workers.start(env={**FAULTS, "BRIDGEPOOL_WORKER_CALL_TIMEOUT_SECONDS": "0.3"})
    response = worker.call("fault", {"kind": "slow", "seconds": 2}, headers={HEADER_TIMEOUT: "30"})
    assert response.status_code == 504
    assert response.json()["error"]["context"]["timeout_seconds"] == 0.3


def test_recycling_limit_shows_in_readiness_and_stats(workers: Workers) -> None:
    worker = workers.start(env={"BRIDGEPOOL_WORKER_MAX_REQUESTS": "3"})
    for _ in range(2):
        worker.result("ping")
    assert worker.get("/readyz").json()["recycle"]["due"] is False
    worker.result("ping")

    readyz = worker.get("/readyz")
    assert readyz.status_code == 200  # still serving
    recycle = readyz.json()["recycle"]
    assert recycle["due"] is True and recycle["reason"].startswith("max_requests")
    assert worker.get("/v1/stats").json()["recycle"]["due"] is True
    worker.result("ping")
    assert "bridgepool_worker_recycle_due 1.0" in worker.get("/metrics").text


def test_sigterm_lets_the_call_in_flight_finish_and_refuses_new_sessions(
    workers: Workers,
) -> None:
    worker = workers.start(env={**FAULTS, "BRIDGEPOOL_WORKER_CAPACITY": "2"})
    worker.result("ping", session_id="existing")
    answers: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            worker.call("fault", {"kind": "slow", "seconds": 1.0}, session_id="existing")
        )
    )
    caller.start()
    wait_for(lambda: worker.get("/v1/stats").json()["in_flight"] == 1)
    worker.signal(signal.SIGTERM)
    wait_for(lambda: worker.get("/readyz").status_code == 503)

    readiness = Readiness.model_validate(worker.get("/readyz").json())
    assert readiness.state == WorkerState.TERMINATING and not readiness.accepting_sessions
    refused = worker.call("ping", session_id="brand-new")
    assert refused.status_code == 503
    assert refused.json()["error"]["type"] == "not_accepting_sessions"
    assert refused.json()["error"]["retryable"] is True
    worker.result("ping", session_id="existing")  # existing sessions keep working

    caller.join(10)
    assert answers and answers[0].status_code == 200, answers
    assert worker.wait(10) == 0  # once drained, well before the grace period's 25 s
    assert (
        '"to": "terminating"' in worker.logs() and '"reason": "received SIGTERM"' in worker.logs()
    )


def test_grace_deadline_abandons_a_stuck_call_with_exit_1(workers: Workers) -> None:
    worker = workers.start(env={**FAULTS, "BRIDGEPOOL_WORKER_GRACE_SECONDS": "0.3"})
    caller = threading.Thread(
        target=lambda: _swallow(lambda: worker.call("fault", {"kind": "hang"}))
    )
    caller.start()
    wait_for(lambda: worker.get("/v1/stats").json()["in_flight"] == 1)
    worker.signal(signal.SIGTERM)
    assert worker.wait(5) == 1
    caller.join(10)


def test_second_signal_ends_the_drain(workers: Workers) -> None:
    worker = workers.start(env=FAULTS)
    caller = threading.Thread(
        target=lambda: _swallow(lambda: worker.call("fault", {"kind": "hang"}))
    )
    caller.start()
    wait_for(lambda: worker.get("/v1/stats").json()["in_flight"] == 1)
    worker.signal(signal.SIGTERM)
    wait_for(lambda: worker.get("/readyz").status_code == 503)
    worker.signal(signal.SIGINT)
    assert worker.wait(5) == 1
    caller.join(10)


def test_idle_worker_exits_0_at_once_on_sigterm(workers: Workers) -> None:
    worker = workers.start()
    worker.signal(signal.SIGTERM)
    assert worker.wait(5) == 0


def _swallow(call: Callable[[], object]) -> None:
    """Make a call whose connection the worker is expected to drop."""
    with contextlib.suppress(httpx.TransportError):
        call()

"""A session call with a call id runs once: a retry of it gets the first
attempt's answer, kept with the session and moving with it (real worker
processes, the example ``incr`` command)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bridgepool.protocol import HEADER_CALL_ID, HEADER_REPLAYED
from bridgepool_worker.sessions import ANSWERS_KEPT
from tests.worker.conftest import Worker, Workers
from tests.worker.test_worker_session_move import envelope, export, step

EXAMPLES = Path(__file__).parents[2] / "examples" / "worker_handlers.py"
SLOW = """
import time
from bridgepool_worker import command

@command
def slow_incr(ctx, args):
    time.sleep(args["seconds"])
    ctx.state["count"] = ctx.state.get("count", 0) + 1
    return {"count": ctx.state["count"]}
"""


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


def start(workers: Workers, tmp_path: Path, name: str) -> Worker:
    slow = tmp_path / "slow_handlers.py"
    slow.write_text(SLOW)
    env = {"BRIDGEPOOL_WORKER_NAME": name, "BRIDGEPOOL_WORKER_CAPACITY": "4"}
    return workers.start(env=env, args=["--handlers", str(EXAMPLES), str(slow)])


def incr(worker: Worker, session: str, call_id: str | None) -> httpx.Response:
    headers = {HEADER_CALL_ID: call_id} if call_id else None
    return worker.call("incr", session_id=session, headers=headers)


def count(response: httpx.Response) -> int:
    assert response.status_code == 200, response.text
    return int(response.json()["result"]["count"])


def test_a_retried_call_gets_its_first_answer_and_does_not_run_again(
    workers: Workers, tmp_path: Path
) -> None:
    worker = start(workers, tmp_path, "w")
    first = incr(worker, "s", "call-1")
    assert count(first) == 1 and HEADER_REPLAYED not in first.headers
    again = incr(worker, "s", "call-1")
    assert again.text == first.text and again.headers[HEADER_REPLAYED] == "true"
    assert count(incr(worker, "s", "call-2")) == 2  # a new id runs
    assert count(incr(worker, "s", None)) == 3  # no id: runs every time
    assert count(incr(worker, "other", "call-1")) == 1  # ids are per session
    metrics = worker.get("/metrics").text
    assert "bridgepool_worker_replayed_calls_total 1.0" in metrics


def test_a_retry_of_a_call_still_running_waits_for_its_answer(
    workers: Workers, tmp_path: Path
) -> None:
    worker = start(workers, tmp_path, "w")
    headers = {HEADER_CALL_ID: "slow-1"}
    answers: list[httpx.Response] = []

    def call() -> None:
        answers.append(worker.call("slow_incr", {"seconds": 0.5}, session_id="s", headers=headers))

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(count(a) for a in answers) == [1, 1, 1]
    assert sorted(a.headers.get(HEADER_REPLAYED, "") for a in answers) == ["", "true", "true"]
    assert count(incr(worker, "s", None)) == 2


def test_answers_are_kept_for_the_last_calls_only(workers: Workers, tmp_path: Path) -> None:
    worker = start(workers, tmp_path, "w")
    for n in range(ANSWERS_KEPT + 1):
        assert count(incr(worker, "s", f"c-{n}")) == n + 1
    assert count(incr(worker, "s", f"c-{ANSWERS_KEPT}")) == ANSWERS_KEPT + 1  # kept
    # The oldest answer is forgotten: its id runs again.
    assert count(incr(worker, "s", "c-0")) == ANSWERS_KEPT + 2


def test_a_bad_call_id_is_refused_naming_the_rule(workers: Workers, tmp_path: Path) -> None:
    worker = start(workers, tmp_path, "w")
    refused = incr(worker, "s", "no spaces")
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["category"], error["type"]) == ("session", "invalid_call_id")
    assert error["message"].startswith("X-BridgePool-Call-Id: a call id is 1 to 256 characters")


def test_kept_answers_move_with_the_session(workers: Workers, tmp_path: Path) -> None:
    a, b = start(workers, tmp_path, "worker-a"), start(workers, tmp_path, "worker-b")
    first = incr(a, "s", "before-move")
    assert count(first) == 1
    exported = export(a, "s")
    assert step(b, "s", "import", envelope(exported)).status_code == 200
    commit = {"move_id": exported.move.move_id, "holder_url": b.url}
    assert step(a, "s", "commit", commit).status_code == 200
    # A retry that reaches the new holder gets the answer it would have had.
    again = incr(b, "s", "before-move")
    assert again.text == first.text and again.headers[HEADER_REPLAYED] == "true"
    assert count(incr(b, "s", "after-move")) == 2

"""The mover (the operator's and the local supervisor's) against real worker
processes: a draining worker's sessions move with their programs, and one
that cannot move stays, named, and is not tried again by any mover."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bridgepool.moves.mover import move_off
from bridgepool.placement import Target, home_of
from bridgepool.worker_http import WorkerHttp, fetch_stats
from tests.worker.conftest import Worker, Workers


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


def program_in(worker: Worker, session: str) -> tuple[str, dict[str, object]]:
    """A program in ``session`` on ``worker``: its id and its answer to one question."""
    created = worker.result(
        "create_program", {"signature": "question -> answer"}, session_id=session
    )
    run = {"program_id": created["program_id"], "inputs": {"question": "2+2?"}}
    return created["program_id"], worker.result("execute_program", run, session_id=session)


def sessions_on(worker: Worker) -> set[str]:
    return {s["session_id"] for s in worker.get("/v1/sessions").json()["sessions"]}


async def test_a_draining_workers_sessions_move_with_their_programs(workers: Workers) -> None:
    source, first, second = workers.start(), workers.start(), workers.start()
    answers = {f"s-{i}": program_in(source, f"s-{i}") for i in range(4)}
    targets = (Target("first", first.url), Target("second", second.url))

    async with aiohttp.ClientSession() as client:
        http = WorkerHttp(client, workers.keys)
        report = await move_off(http, source.url, targets, budget_seconds=30, step_timeout=10)

    assert set(report.moved) == set(answers) and not report.cannot_move and not report.failed
    # Each went to its home among the targets: where a router would place it.
    assert report.moved == {s: home_of(s, ["first", "second"]) for s in answers}
    assert sessions_on(source) == set()
    for session, (program_id, answer) in answers.items():
        holder = first if report.moved[session] == "first" else second
        run = {"program_id": program_id, "inputs": {"question": "2+2?"}}
        assert holder.result("execute_program", run, session_id=session) == answer
        # The old worker names the new holder instead of starting the session afresh.
        gone = source.call("ping", session_id=session)
        assert gone.status_code == 410
        assert gone.json()["error"]["type"] == "session_moved"


async def test_a_session_too_large_to_move_stays_where_it_is_and_says_why(
    workers: Workers,
) -> None:
    source = workers.start(env={"BRIDGEPOOL_WORKER_MAX_SESSION_STATE_BYTES": "64"})
    target = workers.start()
    program_id, answer = program_in(source, "big")

    async with aiohttp.ClientSession() as client:
        http = WorkerHttp(client, workers.keys)
        report = await move_off(
            http, source.url, (Target("t", target.url),), budget_seconds=30, step_timeout=10
        )
        assert report.cannot_move == {"big": "session_too_large"} and not report.moved
    # The worker remembers: a new mover (a restarted operator) leaves it alone,
    # and the worker's stats count it for the pool's status.
    async with aiohttp.ClientSession() as client:
        http = WorkerHttp(client, workers.keys)
        again = await move_off(
            http, source.url, (Target("t", target.url),), budget_seconds=30, step_timeout=10
        )
        stats = await fetch_stats(http, source.url)
    assert not again.moved and not again.cannot_move and not again.failed
    assert stats is not None and stats.unmovable_sessions == {"session_too_large": 1}
    # Nothing lost: it still answers where it was, and the target has no copy.
    run = {"program_id": program_id, "inputs": {"question": "2+2?"}}
    assert source.result("execute_program", run, session_id="big") == answer
    assert sessions_on(target) == set()


async def test_a_session_with_every_punctuation_an_id_may_have_moves(workers: Workers) -> None:
    """Session ids keep to characters that stand in a URL path as they are
    (``bridgepool.names``); the mover quotes them all the same, as every
    other caller of the session endpoints does."""
    source, target = workers.start(), workers.start()
    odd = ["user:42@team+a=b~c.d-e_f", "a.b", "x=y"]
    for session in odd:
        program_in(source, session)

    async with aiohttp.ClientSession() as client:
        http = WorkerHttp(client, workers.keys)
        report = await move_off(
            http, source.url, (Target("t", target.url),), budget_seconds=30, step_timeout=10
        )
    assert report.moved == dict.fromkeys(odd, "t") and not report.failed
    assert sessions_on(target) == set(odd) and sessions_on(source) == set()

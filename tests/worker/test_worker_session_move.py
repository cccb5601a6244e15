"""Moving a session between real worker processes: export, import, commit,
abort; calls during a move; limits and refusals; a mover that stops part way.

A "mover" here is the test itself. It stops part way by not calling the next
step; the tests then wait on what the workers show (``/v1/moves``,
``/v1/sessions``, metrics), with short move timeouts, never on sleeps.
"""

from __future__ import annotations

import signal
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridgepool.moves.wire import SessionExport, envelope_checksum

from .conftest import Worker, Workers
from .test_worker_processes import session_ids, wait_for

HANDLERS = textwrap.dedent(
    """
    import time
    from typing import Any

    from bridgepool_worker import (
        CommandContext, MoveRefused, command, state_exporter, state_importer,
    )


    @command
    def note(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        time.sleep(args.get("seconds", 0))  # a call still running when a move starts
        ctx.state.setdefault("notes", []).append(args["text"])
        ctx.state["tags"] = ctx.state.get("tags", set()) | {args["text"][0]}
        return recall(ctx, args)


    @command
    def recall(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
        tags = ctx.state.get("tags", set())
        return {"notes": ctx.state.get("notes", []), "tags": sorted(tags),
                "tags_type": type(tags).__name__}


    @command
    def put(ctx: CommandContext, args: dict[str, Any]) -> None:
        ctx.state[args["key"]] = args["value"]


    @command
    def keep_pair(ctx: CommandContext, args: dict[str, Any]) -> None:
        ctx.state["pair"] = (1, 2)  # a tuple: JSON would give back a list


    @command
    def open_socket(ctx: CommandContext, args: dict[str, Any]) -> None:
        ctx.state["socket"] = object()


    @command
    def load_model(ctx: CommandContext, args: dict[str, Any]) -> None:
        ctx.state["model"] = "weights"


    @command
    def forget(ctx: CommandContext, args: dict[str, Any]) -> None:
        ctx.state.pop(args["key"], None)


    # A set does not survive JSON: its key gets hooks.
    @state_exporter("tags")
    def export_tags(value: set[str]) -> list[str]:
        return sorted(value)


    @state_importer("tags")
    def import_tags(data: list[str]) -> set[str]:
        return set(data)


    @state_exporter("socket")
    def export_socket(value: object) -> None:
        raise MoveRefused("it holds an open socket")


    @state_exporter("model")
    def export_model(value: str) -> str:
        raise OSError("disk full")
    """
)

# Short move timeouts: a frozen session thaws, a pending copy goes, in tenths
# of a second; tests that need a step to wait set longer ones.
FAST_MOVES = {
    "BRIDGEPOOL_WORKER_CAPACITY": "4",
    "BRIDGEPOOL_WORKER_MOVE_WAIT_SECONDS": "0.3",
}


@pytest.fixture
def handlers(tmp_path: Path) -> str:
    path = tmp_path / "move_handlers.py"
    path.write_text(HANDLERS)
    return str(path)


def start(workers: Workers, handlers: str, name: str, **settings: str) -> Worker:
    env = {**FAST_MOVES, "BRIDGEPOOL_WORKER_NAME": name}
    env.update({f"BRIDGEPOOL_WORKER_{key.upper()}": value for key, value in settings.items()})
    return workers.start(env=env, args=["--handlers", handlers])


@pytest.fixture
def pair(workers: Workers, handlers: str) -> Iterator[tuple[Worker, Worker]]:
    yield start(workers, handlers, "worker-a"), start(workers, handlers, "worker-b")


def step(worker: Worker, session_id: str, name: str, body: Any = None) -> httpx.Response:
    return worker.client.post(f"/v1/sessions/{session_id}/{name}", json=body)


def export(worker: Worker, session_id: str) -> SessionExport:
    response = step(worker, session_id, "export")
    assert response.status_code == 200, response.text
    return SessionExport.model_validate(response.json())


def envelope(exported: SessionExport) -> dict[str, Any]:
    return exported.envelope.model_dump(mode="json")


def error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["success"] is False, body
    return dict(body["error"])


def moves(worker: Worker) -> list[dict[str, Any]]:
    return list(worker.get("/v1/moves").json()["moves"])


def metric(worker: Worker, series: str) -> float:
    for line in worker.get("/metrics").text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def unmovable(worker: Worker) -> dict[str, str | None]:
    """Each listed session's reason it cannot move (None: it may)."""
    sessions = worker.get("/v1/sessions").json()["sessions"]
    return {s["session_id"]: s["unmovable"] for s in sessions}


def unmovable_counts(worker: Worker) -> dict[str, int]:
    return dict(worker.get("/v1/stats").json()["unmovable_sessions"])


def with_state(worker: Worker, session_id: str) -> dict[str, Any]:
    """A session with two notes (a hooked set among its state) and a program."""
    worker.result("note", {"text": "alpha"}, session_id=session_id)
    worker.result("note", {"text": "beta"}, session_id=session_id)
    program = worker.result(
        "create_program",
        {"signature": "question -> answer", "instructions": "Be brief.", "program_id": "qa"},
        session_id=session_id,
    )
    run = {"program_id": program["program_id"], "inputs": {"question": "2+2?"}}
    answer = worker.result("execute_program", run, session_id=session_id)["outputs"]
    return {"recall": worker.result("recall", session_id=session_id), "answer": answer}


def in_background(
    worker: Worker, command: str, args: dict[str, Any] | None = None, *, session_id: str
) -> Callable[[], httpx.Response]:
    """Start a call in a thread; what it returns waits for the call's answer."""
    answers: list[httpx.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(worker.call(command, args, session_id=session_id))
    )
    caller.start()

    def answer() -> httpx.Response:
        caller.join(10)
        return answers[0]

    return answer


def assert_intact(worker: Worker, session_id: str, before: dict[str, Any]) -> None:
    """The session answers here as it did before: same state, same program outputs."""
    assert worker.result("recall", session_id=session_id) == before["recall"]
    run = {"program_id": "qa", "inputs": {"question": "2+2?"}}
    assert (
        worker.result("execute_program", run, session_id=session_id)["outputs"]
        == (before["answer"])
    )


# -- the move ---------------------------------------------------------------------------


def test_a_session_moves_with_its_programs_and_state_and_answers_the_same_there(
    pair: tuple[Worker, Worker],
) -> None:
    a, b = pair
    before = with_state(a, "s1")

    exported = export(a, "s1")
    assert exported.move.state == "frozen" and exported.envelope.source == "worker-a"
    assert exported.size_bytes > 0
    imported = step(b, "s1", "import", envelope(exported))
    assert imported.status_code == 200 and imported.json()["state"] == "pending"
    assert "s1" not in session_ids(b)  # not live on B before the commit

    committed = step(a, "s1", "commit", {"move_id": exported.move.move_id, "holder_url": b.url})
    assert committed.status_code == 200, committed.text
    assert committed.json() | {"expires_in_seconds": None} == {
        "session_id": "s1",
        "move_id": exported.move.move_id,
        "state": "moved",
        "holder": "worker-b",
        "holder_url": b.url,
        "expires_in_seconds": None,
        "proof": None,  # only an activation's answer carries one
    }

    assert_intact(b, "s1", before)
    assert b.result("recall", session_id="s1")["tags_type"] == "set"  # through its hooks
    info = b.result("get_program_info", {"program_id": "qa"}, session_id="s1")
    assert info["executions"] == 2 and info["instructions"] == "Be brief."
    assert (session_ids(a), session_ids(b)) == (set(), {"s1"})

    # A names the new holder, for calls and deletes alike, until it exits.
    for answer in (a.call("recall", session_id="s1"), a.client.delete("/v1/sessions/s1")):
        assert answer.status_code == 410
        moved = error(answer)
        assert (moved["category"], moved["type"], moved["retryable"]) == (
            "session",
            "session_moved",
            False,
        )
        assert moved["context"]["holder"] == "worker-b"
        assert moved["context"]["holder_url"] == b.url
    assert moves(a) == [committed.json()]
    assert moves(b) == []

    assert metric(a, "bridgepool_worker_sessions_exported_total") == 1
    assert metric(b, "bridgepool_worker_sessions_imported_total") == 1
    assert metric(a, 'bridgepool_worker_session_moves_total{result="moved_out"}') == 1
    assert metric(b, 'bridgepool_worker_session_moves_total{result="moved_in"}') == 1
    assert metric(a, 'bridgepool_worker_sessions_closed_total{reason="moved"}') == 1
    assert '"message": "session moved"' in a.logs() and '"holder": "worker-b"' in a.logs()
    assert '"message": "session activated: it lives here now"' in b.logs()


def test_a_session_can_move_on_and_back(pair: tuple[Worker, Worker]) -> None:
    a, b = pair
    before = with_state(a, "round-trip")
    for source, target in ((a, b), (b, a)):
        exported = export(source, "round-trip")
        assert step(target, "round-trip", "import", envelope(exported)).status_code == 200
        commit = {"move_id": exported.move.move_id, "holder_url": target.url}
        assert step(source, "round-trip", "commit", commit).status_code == 200
    assert_intact(a, "round-trip", before)  # back home: no tombstone in the way
    assert error(b.call("recall", session_id="round-trip"))["context"]["holder"] == "worker-a"


# -- while frozen -------------------------------------------------------------------------


def test_calls_during_the_freeze_wait_and_then_get_a_retryable_503(
    pair: tuple[Worker, Worker],
) -> None:
    a, _ = pair
    before = with_state(a, "frozen")
    exported = export(a, "frozen")

    refused = a.call("recall", session_id="frozen")
    assert refused.status_code == 503
    moving = error(refused)
    assert (moving["category"], moving["type"], moving["retryable"]) == (
        "session",
        "session_moving",
        True,
    )
    assert moving["context"]["move_state"] == "frozen"
    listed = a.get("/v1/sessions").json()["sessions"]
    assert [s["moving"] for s in listed if s["session_id"] == "frozen"] == [True]
    assert a.client.delete("/v1/sessions/frozen").status_code == 503
    assert a.result("ping")  # other calls carry on
    a.result("note", {"text": "other"}, session_id="another")

    # The lock: one move of a session at a time.
    again = step(a, "frozen", "export")
    assert again.status_code == 409 and error(again)["type"] == "move_in_progress"

    assert step(a, "frozen", "abort", {"move_id": exported.move.move_id}).json()["state"] == "live"
    assert_intact(a, "frozen", before)
    assert metric(a, 'bridgepool_worker_rejected_total{reason="session_moving"}') == 1


def test_a_waiting_call_goes_on_as_soon_as_the_move_is_aborted(
    workers: Workers, handlers: str
) -> None:
    a = start(workers, handlers, "worker-a", move_wait_seconds="30")
    with_state(a, "waiter")
    exported = export(a, "waiter")
    answer = in_background(a, "note", {"text": "gamma"}, session_id="waiter")
    wait_for(lambda: metric(a, "bridgepool_worker_calls_waiting_for_moves") == 1)
    step(a, "waiter", "abort", {"move_id": exported.move.move_id})
    assert answer().status_code == 200
    assert answer().json()["result"]["notes"] == ["alpha", "beta", "gamma"]


def test_a_waiting_call_learns_where_the_session_went(workers: Workers, handlers: str) -> None:
    a = start(workers, handlers, "worker-a", move_wait_seconds="30")
    b = start(workers, handlers, "worker-b")
    with_state(a, "follow")
    exported = export(a, "follow")
    answer = in_background(a, "recall", session_id="follow")
    wait_for(lambda: metric(a, "bridgepool_worker_calls_waiting_for_moves") == 1)
    step(b, "follow", "import", envelope(exported))
    step(a, "follow", "commit", {"move_id": exported.move.move_id, "holder_url": b.url})
    assert answer().status_code == 410
    assert error(answer())["context"]["holder"] == "worker-b"


def test_an_export_waits_for_the_sessions_call_in_flight(workers: Workers, handlers: str) -> None:
    a = start(workers, handlers, "worker-a", move_wait_seconds="30")
    with_state(a, "busy")
    answer = in_background(a, "note", {"text": "late", "seconds": 0.5}, session_id="busy")
    wait_for(lambda: a.get("/v1/stats").json()["in_flight"] == 1)
    exported = export(a, "busy")  # between the session's calls: after this one
    assert answer().status_code == 200
    assert exported.envelope.handler_state["notes"] == ["alpha", "beta", "late"]


def test_an_export_gives_up_on_a_call_that_runs_on(workers: Workers, handlers: str) -> None:
    a = start(workers, handlers, "worker-a")  # move_wait 0.3 s
    before = with_state(a, "long")
    answer = in_background(a, "note", {"text": "slow", "seconds": 2}, session_id="long")
    wait_for(lambda: a.get("/v1/stats").json()["in_flight"] == 1)
    busy = step(a, "long", "export")
    assert answer().status_code == 200
    assert busy.status_code == 503
    assert (error(busy)["type"], error(busy)["retryable"]) == ("session_busy", True)
    assert moves(a) == []  # not frozen: the export let go
    before["recall"]["notes"].append("slow")
    before["recall"]["tags"].append("s")
    assert_intact(a, "long", before)


# -- the mover stops part way ---------------------------------------------------------------


def test_an_exported_session_thaws_on_its_own_when_no_commit_comes(
    workers: Workers, handlers: str
) -> None:
    a = start(workers, handlers, "worker-a", move_freeze_seconds="0.3")
    before = with_state(a, "forgotten")
    exported = export(a, "forgotten")
    wait_for(lambda: moves(a) == [])
    assert_intact(a, "forgotten", before)
    late = step(a, "forgotten", "commit", {"move_id": exported.move.move_id, "holder_url": a.url})
    assert late.status_code == 404 and error(late)["type"] == "move_not_found"
    assert metric(a, 'bridgepool_worker_session_moves_total{result="expired"}') == 1


def test_a_mover_gone_after_the_import_leaves_the_session_live_once_where_it_was(
    workers: Workers, handlers: str
) -> None:
    a = start(workers, handlers, "worker-a", move_freeze_seconds="0.3")
    b = start(workers, handlers, "worker-b", move_pending_seconds="0.6")
    before = with_state(a, "half")
    exported = export(a, "half")
    assert step(b, "half", "import", envelope(exported)).status_code == 200

    def settled() -> bool:
        # Never live in two places, at any moment we look.
        assert not ("half" in session_ids(a) and "half" in session_ids(b))
        assert b.call("recall", session_id="half").status_code == 503  # pending: not served
        return moves(a) == []

    wait_for(settled)
    assert_intact(a, "half", before)
    wait_for(lambda: moves(b) == [])
    assert session_ids(b) == set()
    assert metric(b, 'bridgepool_worker_session_moves_total{result="discarded"}') == 1
    # The copy cannot go live now, whoever asks.
    token_guess = {"move_id": exported.move.move_id, "commit_token": "0" * 64}
    assert step(b, "half", "activate", token_guess).status_code == 404


def test_a_commit_finishes_by_itself_when_the_target_answers_late(
    workers: Workers, handlers: str
) -> None:
    a = start(workers, handlers, "worker-a")
    b = start(workers, handlers, "worker-b")
    before = with_state(a, "late")
    exported = export(a, "late")
    assert step(b, "late", "import", envelope(exported)).status_code == 200

    b.signal(signal.SIGSTOP)  # B takes the connection, but answers nothing
    try:
        commit = {"move_id": exported.move.move_id, "holder_url": b.url}
        pending = step(a, "late", "commit", commit)
        assert pending.status_code == 202 and pending.json()["state"] == "committing"
        # The mover goes away now. A serves the session no more, and keeps it.
        assert error(a.call("recall", session_id="late"))["type"] == "session_moving"
        aborted = step(a, "late", "abort", {"move_id": exported.move.move_id})
        assert aborted.status_code == 409 and error(aborted)["type"] == "move_committing"
    finally:
        b.signal(signal.SIGCONT)
    wait_for(lambda: [m["state"] for m in moves(a)] == ["moved"])
    assert_intact(b, "late", before)
    assert session_ids(a) == set()


def test_a_commit_to_a_worker_without_the_copy_keeps_the_session_here(
    pair: tuple[Worker, Worker],
) -> None:
    a, b = pair
    before = with_state(a, "wrong")
    exported = export(a, "wrong")  # the mover never imports it anywhere
    refused = step(a, "wrong", "commit", {"move_id": exported.move.move_id, "holder_url": b.url})
    assert refused.status_code == 409
    assert error(refused)["type"] == "activation_refused"
    assert error(refused)["context"]["target_error"]["type"] == "move_not_found"
    assert_intact(a, "wrong", before)
    assert session_ids(b) == set()


def test_a_target_that_exits_before_the_commit_leaves_the_session_here(
    pair: tuple[Worker, Worker],
) -> None:
    a, b = pair
    before = with_state(a, "target-gone")
    exported = export(a, "target-gone")
    assert step(b, "target-gone", "import", envelope(exported)).status_code == 200
    b.signal(signal.SIGTERM)  # its pending copy goes with it
    assert b.wait(10) == 0
    commit = {"move_id": exported.move.move_id, "holder_url": b.url}
    refused = step(a, "target-gone", "commit", commit)
    assert refused.status_code == 409
    assert error(refused)["context"]["target_error"]["type"] == "target_unreachable"
    assert_intact(a, "target-gone", before)


def test_a_terminating_worker_lets_its_frozen_session_finish_moving(
    pair: tuple[Worker, Worker],
) -> None:
    a, b = pair
    before = with_state(a, "leaving")
    exported = export(a, "leaving")
    step(b, "leaving", "import", envelope(exported))
    a.signal(signal.SIGTERM)
    wait_for(lambda: a.get("/readyz").json()["state"] == "terminating")
    commit = {"move_id": exported.move.move_id, "holder_url": b.url}
    assert step(a, "leaving", "commit", commit).status_code == 200  # A waited for it
    assert a.wait(10) == 0
    assert_intact(b, "leaving", before)


def test_abort_on_the_target_drops_its_copy_and_the_source_keeps_the_session(
    pair: tuple[Worker, Worker],
) -> None:
    a, b = pair
    before = with_state(a, "undo")
    exported = export(a, "undo")
    step(b, "undo", "import", envelope(exported))
    ref = {"move_id": exported.move.move_id}
    assert step(b, "undo", "abort", ref).json()["state"] == "discarded"
    assert step(a, "undo", "abort", ref).json()["state"] == "live"
    assert (moves(a), moves(b)) == ([], [])
    assert_intact(a, "undo", before)
    assert step(a, "undo", "abort", ref).status_code == 404  # nothing left to abort


# -- refusals: nothing is lost ---------------------------------------------------------------


def test_a_state_over_the_limit_is_refused_and_stays(workers: Workers, handlers: str) -> None:
    a = start(workers, handlers, "worker-a", max_session_state_bytes="4096")
    before = with_state(a, "big")
    a.result("put", {"key": "blob", "value": "x" * 5000}, session_id="big")
    for _ in range(2):  # the failed export let go of its lock
        refused = step(a, "big", "export")
        assert refused.status_code == 422
        too_large = error(refused)
        assert (too_large["category"], too_large["type"]) == ("resource", "session_too_large")
        assert too_large["context"]["limit_bytes"] == 4096
        assert too_large["context"]["size_bytes"] > 5000
    assert_intact(a, "big", before)
    assert unmovable(a) == {"big": "session_too_large"}
    assert unmovable_counts(a) == {"session_too_large": 1}
    assert (
        metric(
            a,
            'bridgepool_worker_session_move_refusals_total{reason="session_too_large",step="export"}',
        )
        == 2
    )


def test_a_target_with_a_smaller_limit_refuses_the_import(workers: Workers, handlers: str) -> None:
    a = start(workers, handlers, "worker-a")
    b = start(workers, handlers, "worker-b", max_session_state_bytes="1024")
    before = with_state(a, "big-import")
    a.result("put", {"key": "blob", "value": "y" * 2000}, session_id="big-import")
    exported = export(a, "big-import")
    refused = step(b, "big-import", "import", envelope(exported))
    assert refused.status_code == 413
    assert error(refused)["type"] == "session_too_large"
    assert moves(b) == []
    step(a, "big-import", "abort", {"move_id": exported.move.move_id})
    assert_intact(a, "big-import", before)


@pytest.mark.parametrize(
    ("command", "type_", "words"),
    [
        ("open_socket", "move_refused", "it holds an open socket"),
        ("keep_pair", "unserializable_state", "'pair'"),
        ("load_model", "export_failed", "OSError: disk full"),
    ],
)
def test_state_that_cannot_move_fails_the_export_clearly_and_stays(
    pair: tuple[Worker, Worker], command: str, type_: str, words: str
) -> None:
    a, _ = pair
    before = with_state(a, "stuck")
    a.result(command, session_id="stuck")
    refused = step(a, "stuck", "export")
    assert refused.status_code == 422
    assert error(refused)["type"] == type_ and words in error(refused)["message"]
    assert moves(a) == []
    assert_intact(a, "stuck", before)
    assert unmovable(a) == {"stuck": type_}  # the worker remembers why, for any mover
    assert unmovable_counts(a) == {type_: 1}


# -- sessions that cannot move: the worker remembers -------------------------------------------


def test_a_session_that_cannot_move_is_remembered_until_it_ends(
    workers: Workers, handlers: str
) -> None:
    a = start(workers, handlers, "worker-a", max_session_state_bytes="4096")
    a.result("open_socket", session_id="hooked")
    for session_id in ("big", "bigger"):
        a.result("put", {"key": "blob", "value": "x" * 5000}, session_id=session_id)
    a.result("note", {"text": "fine"}, session_id="fine")
    for session_id, status in (("hooked", 422), ("big", 422), ("bigger", 422), ("fine", 200)):
        assert step(a, session_id, "export").status_code == status
    assert unmovable(a) == {
        "hooked": "move_refused",
        "big": "session_too_large",
        "bigger": "session_too_large",
        "fine": None,  # it may move (it is frozen for its move now)
    }
    assert unmovable_counts(a) == {"move_refused": 1, "session_too_large": 2}

    # A failure that says "not now" leaves the record as it was.
    answer = in_background(a, "note", {"text": "slow", "seconds": 1}, session_id="hooked")
    wait_for(lambda: a.get("/v1/stats").json()["in_flight"] == 1)
    assert error(step(a, "hooked", "export"))["type"] == "session_busy"
    assert answer().status_code == 200
    assert unmovable(a)["hooked"] == "move_refused"

    # The record ends with the session, however it ends.
    assert a.client.delete("/v1/sessions/hooked").status_code == 200
    assert unmovable_counts(a) == {"session_too_large": 2}
    assert a.result("cleanup_session", {"session_id": "big"})["cleaned"]
    assert unmovable_counts(a) == {"session_too_large": 1}
    # A new session under an old id starts with a clean record.
    a.result("note", {"text": "again"}, session_id="hooked")
    assert unmovable(a)["hooked"] is None


def test_an_unmovable_session_that_expires_is_no_longer_counted(
    workers: Workers, handlers: str
) -> None:
    a = start(workers, handlers, "worker-a", session_ttl_seconds="1")
    a.result("open_socket", session_id="short-lived")
    assert step(a, "short-lived", "export").status_code == 422
    assert unmovable_counts(a) == {"move_refused": 1}
    wait_for(lambda: metric(a, 'bridgepool_worker_sessions_closed_total{reason="expired"}') == 1)
    assert (unmovable(a), unmovable_counts(a)) == ({}, {})


def test_an_export_that_succeeds_clears_the_record_and_the_session_moves_without_it(
    pair: tuple[Worker, Worker],
) -> None:
    a, b = pair
    before = with_state(a, "mended")
    a.result("open_socket", session_id="mended")
    assert error(step(a, "mended", "export"))["type"] == "move_refused"
    assert unmovable(a) == {"mended": "move_refused"}

    a.result("forget", {"key": "socket"}, session_id="mended")  # what held it here goes
    assert unmovable(a) == {"mended": "move_refused"}  # until an export says otherwise
    exported = export(a, "mended")
    assert unmovable(a) == {"mended": None} and unmovable_counts(a) == {}
    assert step(b, "mended", "import", envelope(exported)).status_code == 200
    commit = {"move_id": exported.move.move_id, "holder_url": b.url}
    assert step(a, "mended", "commit", commit).status_code == 200
    assert (unmovable(a), unmovable(b)) == ({}, {"mended": None})
    assert (unmovable_counts(a), unmovable_counts(b)) == ({}, {})
    assert_intact(b, "mended", before)


def test_an_import_checks_version_checksum_and_where_the_session_lives(
    pair: tuple[Worker, Worker],
) -> None:
    a, b = pair
    with_state(a, "checked")
    b.result("recall", session_id="lives-on-b")
    exported = envelope(export(a, "checked"))

    tampered = exported | {"handler_state": {"notes": ["forged"]}}
    newer = exported | {"format_version": 2}
    elsewhere = exported | {"session_id": "lives-on-b"}
    cases = [
        ("checked", tampered, 422, "checksum_mismatch"),
        ("checked", newer, 422, "unsupported_format_version"),
        ("other", exported, 400, "session_mismatch"),
        ("checked", "not an envelope", 400, "invalid_envelope"),
    ]
    for session_id, body, status, type_ in cases:
        answer = step(b, session_id, "import", body)
        assert (answer.status_code, error(answer)["type"]) == (status, type_), answer.text
    # A session id that lives on B already (checksum fixed up, as a mover could).
    elsewhere["sha256"] = envelope_checksum(elsewhere)
    exists = step(b, "lives-on-b", "import", elsewhere)
    assert (exists.status_code, error(exists)["type"]) == (409, "session_exists")

    assert step(b, "checked", "import", exported).status_code == 200
    assert step(b, "checked", "import", exported).status_code == 200  # the same again: fine
    # A worker does not import a session it is exporting.
    assert error(step(a, "checked", "import", exported))["type"] == "session_exists"
    assert moves(b)[0]["state"] == "pending"


@pytest.mark.dspy
def test_a_dspy_program_moves_between_workers(workers: Workers, tmp_path: Path) -> None:
    pytest.importorskip("dspy")
    module = tmp_path / "dspy_setup.py"
    module.write_text(
        textwrap.dedent(
            """
            import dspy
            from dspy.utils import DummyLM

            from bridgepool_worker import command

            dspy.configure(lm=DummyLM([{"answer": "four"}] * 10))


            @command
            def lm_name(ctx, args):
                return type(dspy.settings.lm).__name__
            """
        )
    )
    a, b = (
        workers.start(env={"BRIDGEPOOL_WORKER_NAME": name}, args=["--handlers", str(module)])
        for name in ("worker-a", "worker-b")
    )
    created = a.result(
        "create_program", {"signature": "question -> answer", "backend": "dspy"}, session_id="d"
    )
    run = {"program_id": created["program_id"], "inputs": {"question": "2+2?"}}
    assert a.result("execute_program", run, session_id="d")["outputs"] == {"answer": "four"}

    exported = export(a, "d")
    (program,) = exported.envelope.programs
    assert program["backend"] == "dspy" and program["dspy_state"]["signature"]
    assert step(b, "d", "import", envelope(exported)).status_code == 200
    commit = {"move_id": exported.move.move_id, "holder_url": b.url}
    assert step(a, "d", "commit", commit).status_code == 200
    assert b.result("execute_program", run, session_id="d")["outputs"] == {"answer": "four"}
    info = b.result("get_program_info", {"program_id": created["program_id"]}, session_id="d")
    assert (info["backend"], info["executions"]) == ("dspy", 2)

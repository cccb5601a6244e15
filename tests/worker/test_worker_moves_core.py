"""Moving sessions, the pure parts: the move table's rules (time passed in),
the envelope's checks, state hooks and program snapshots, the settings."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bridgepool.config import ConfigError
from bridgepool.errors import BridgePoolError, error_body
from bridgepool.moves.wire import (
    SESSION_FORMAT_VERSION,
    MoveState,
    SessionEnvelope,
    canonical_json,
    envelope_checksum,
    moved_to,
)
from bridgepool_worker.config import load_config
from bridgepool_worker.mover import parse_envelope
from bridgepool_worker.moves import Incoming, MoveTable, token_digest
from bridgepool_worker.programs import (
    ProgramDefinition,
    build_program,
    restore_program,
    run_offline,
    snapshot_program,
)
from bridgepool_worker.registry import CommandRegistry, HandlerLoadError, StateHooks
from bridgepool_worker.sdk import MoveRefused
from bridgepool_worker.sessions import Session
from bridgepool_worker.snapshots import (
    export_handler_state,
    import_handler_state,
    import_programs,
)


def error_type(call: Any, *args: Any) -> str:
    with pytest.raises(BridgePoolError) as err:
        call(*args)
    return err.value.info.type


# -- the move table ---------------------------------------------------------------------


def frozen(table: MoveTable, session_id: str = "s", now: float = 0, freeze: float = 10) -> str:
    move = table.freeze(session_id, f"move-{session_id}", "token", idle=0)
    table.start_clock(move, now, freeze)
    return move.move_id


def pending(table: MoveTable, session_id: str = "s", deadline: float = 10) -> str:
    move_id = f"in-{session_id}"
    session = Session(session_id, created_at=0, last_activity=0)
    table.add_incoming(Incoming(session_id, move_id, token_digest("token"), session, 0, deadline))
    return move_id


def test_the_freeze_is_the_lock_one_move_of_a_session_at_a_time() -> None:
    table = MoveTable()
    frozen(table, "s")
    assert error_type(table.freeze, "s", "m2", "t", 0) == "move_in_progress"
    pending(table, "arriving")
    assert error_type(table.freeze, "arriving", "m3", "t", 0) == "move_in_progress"
    assert table.in_progress() == 2


@pytest.mark.parametrize(
    ("now", "thawed", "dropped"),
    [(9.99, [], []), (10, ["s"], ["in"]), (50, ["s"], ["in"])],
)
def test_a_freeze_and_a_pending_copy_end_at_their_deadlines(
    now: float, thawed: list[str], dropped: list[str]
) -> None:
    table = MoveTable()
    frozen(table, "s", now=0, freeze=10)
    pending(table, "in", deadline=10)
    committing = frozen(table, "c", now=0, freeze=1)
    table.begin_commit("c", committing, "http://b", now=0.5)
    thaw, drop = table.due(now)
    assert [m.session_id for m in thaw] == thawed  # never a committing one
    assert [m.session_id for m in drop] == dropped


def test_a_commit_comes_within_the_freeze_and_for_one_holder() -> None:
    table = MoveTable()
    move_id = frozen(table, now=0, freeze=10)
    assert error_type(table.begin_commit, "s", move_id, "http://b", 10) == "move_not_found"
    assert error_type(table.begin_commit, "s", "other", "http://b", 1) == "move_not_found"
    move = table.begin_commit("s", move_id, "http://b", 1)
    assert move.state == MoveState.COMMITTING
    assert table.begin_commit("s", move_id, "http://b", 99) is move  # asked again: as it is
    assert error_type(table.begin_commit, "s", move_id, "http://c", 2) == "move_in_progress"
    assert error_type(table.abort_outgoing, "s", move_id) == "move_committing"

    table.finish_commit(move, "worker-b")
    moved = error_type(table.holding, "s")
    assert moved == "session_moved" and table.in_progress() == 0
    assert error_type(table.freeze, "s", "again", "t", 0) == "session_moved"


def test_a_moved_sessions_answer_names_its_holder_as_routers_read_it() -> None:
    table = MoveTable()
    move = table.begin_commit("s", frozen(table), "http://b:8080", 1)
    table.finish_commit(move, "worker-b")
    with pytest.raises(BridgePoolError) as moved:
        table.holding("s")
    body = error_body(moved.value)
    assert moved.value.status == 410 and body["error"]["context"]["holder"] == "worker-b"
    assert moved_to(json.loads(json.dumps(body))["error"]) == "http://b:8080"
    assert moved_to({"type": "session_moving", "context": {"holder_url": "http://b"}}) is None


def test_an_abort_before_the_commit_ends_the_move() -> None:
    table = MoveTable()
    move_id = frozen(table)
    assert error_type(table.abort_outgoing, "s", "other") == "move_not_found"
    table.abort_outgoing("s", move_id)
    assert table.holding("s") is None


def test_activation_needs_the_commit_token_and_answers_twice_the_same() -> None:
    table = MoveTable()
    move_id = pending(table)
    assert error_type(table.activate, "s", move_id, "guess") == "invalid_commit_token"
    assert table.holding("s") is not None  # the copy stays pending
    assert error_type(table.activate, "s", "other", "token") == "move_not_found"
    arrival = table.activate("s", move_id, "token")
    assert arrival is not None and arrival.session.session_id == "s"
    assert table.activate("s", move_id, "token") is None  # already here
    assert table.holding("s") is None


def test_what_may_arrive() -> None:
    table = MoveTable()
    move_id = pending(table, "p")
    assert table.check_arrival("p", move_id) is True  # this very move: already here
    assert error_type(table.check_arrival, "p", "other") == "move_in_progress"
    frozen(table, "leaving")
    assert error_type(table.check_arrival, "leaving", "m") == "session_exists"
    gone = table.begin_commit("leaving", "move-leaving", "http://b", 0)
    table.finish_commit(gone, "b")
    assert table.check_arrival("leaving", "back") is False  # a session may come back
    back = Session("leaving", created_at=0, last_activity=0)
    table.add_incoming(Incoming("leaving", "back", token_digest("t"), back, 0, 10))
    table.activate("leaving", "back", "t")
    assert table.holding("leaving") is None  # no tombstone any more


# -- the envelope -------------------------------------------------------------------------


def envelope(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "format_version": SESSION_FORMAT_VERSION,
        "session_id": "s",
        "move_id": "m",
        "source": "a",
        "source_incarnation": "i",
        "exported_at": 1.5,
        "created_at": 1.0,
        "idle_seconds": 0.0,
        "ttl_seconds": 300.0,
        "programs": [],
        "handler_state": {"n": 1, "text": "é"},
        "commit_token_sha256": token_digest("t"),
    }
    fields.update(changes)
    return fields | {"sha256": envelope_checksum(fields)}


def test_canonical_encoding_is_one_byte_string_per_value() -> None:
    assert canonical_json({"b": [1, 2.5], "a": "é"}) == '{"a":"é","b":[1,2.5]}'.encode()
    assert canonical_json({"ttl": 300.0, "n": [-0.0]}) == canonical_json({"ttl": 300, "n": [0]})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_an_envelope_is_read_whatever_whitespace_the_mover_used() -> None:
    raw = json.dumps(envelope(), indent=2).encode()  # escaped, spaced: still the same
    assert parse_envelope("s", raw, limit=10_000) == SessionEnvelope.model_validate(envelope())


@pytest.mark.parametrize(
    ("body", "session_id", "limit", "type_"),
    [
        (b"{", "s", 10_000, "malformed_json"),
        ([], "s", 10_000, "invalid_envelope"),
        (envelope(format_version=2), "s", 10_000, "unsupported_format_version"),
        (envelope() | {"idle_seconds": 9}, "s", 10_000, "checksum_mismatch"),
        (envelope() | {"sha256": None}, "s", 10_000, "checksum_mismatch"),
        (envelope(), "s", 100, "session_too_large"),
        (envelope(programs="none"), "s", 10_000, "invalid_envelope"),
        (envelope(), "t", 10_000, "session_mismatch"),
    ],
)
def test_an_envelope_is_refused_for_the_first_thing_wrong(
    body: Any, session_id: str, limit: int, type_: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    assert error_type(parse_envelope, session_id, raw, limit) == type_


# -- handler state and programs ---------------------------------------------------------------


def hooks(**pairs: tuple[Any, Any]) -> StateHooks:
    exporters = {key: out for key, (out, _) in pairs.items() if out is not None}
    importers = {key: into for key, (_, into) in pairs.items() if into is not None}
    return StateHooks(exporters, importers, {})


def refuse(value: Any) -> Any:
    raise MoveRefused("busy training")


def crash(value: Any) -> Any:
    raise RuntimeError("disk full")


def test_json_state_moves_as_it_is_and_hooked_keys_through_their_hooks() -> None:
    with_sets = hooks(tags=(sorted, set))
    state = {"n": 1, "notes": ["a"], "nested": {"k": [1, 2.5, None]}, "tags": {"x", "y"}}
    exported = export_handler_state(state, with_sets)
    assert exported == {"n": 1, "notes": ["a"], "nested": {"k": [1, 2.5, None]}, "tags": ["x", "y"]}
    assert import_handler_state(exported, with_sets) == state


@pytest.mark.parametrize(
    ("state", "key_hooks", "type_", "words"),
    [
        ({"pair": (1, 2)}, {}, "unserializable_state", "'pair'"),
        ({"ids": {1: "a"}}, {}, "unserializable_state", "'ids'"),
        ({"x": float("nan")}, {}, "unserializable_state", "'x'"),
        ({"obj": object()}, {}, "unserializable_state", "'obj'"),
        ({"model": 1}, {"model": (refuse, None)}, "move_refused", "busy training"),
        ({"model": 1}, {"model": (crash, None)}, "export_failed", "disk full"),
        ({"model": 1}, {"model": (lambda v: {v}, None)}, "unserializable_state", "exporter"),
    ],
)
def test_state_that_cannot_move_is_named(
    state: dict[str, Any], key_hooks: dict[str, Any], type_: str, words: str
) -> None:
    with pytest.raises(BridgePoolError) as err:
        export_handler_state(state, hooks(**key_hooks))
    assert err.value.status == 422
    assert err.value.info.type == type_ and words in err.value.info.message


def test_a_failing_importer_is_named() -> None:
    with pytest.raises(BridgePoolError) as err:
        import_handler_state({"model": 1}, hooks(model=(None, crash)))
    assert err.value.info.type == "import_failed" and "'model'" in err.value.info.message


def test_an_offline_program_moves_and_answers_the_same() -> None:
    definition = ProgramDefinition(signature="question, context -> answer", instructions="Terse.")
    program = build_program(definition, "qa", "offline", now=5)
    program.executions = 3
    moved = restore_program(json.loads(json.dumps(snapshot_program(program))))
    assert moved == program
    inputs = {"question": "2+2?", "context": "math"}
    assert run_offline(moved, inputs) == run_offline(program, inputs)


def test_a_malformed_program_is_refused_by_its_place() -> None:
    with pytest.raises(BridgePoolError) as err:
        import_programs([{"program_id": "p", "inputs": []}])
    assert err.value.info.type == "import_failed" and "program 0" in err.value.info.message


@pytest.mark.dspy
def test_a_dspy_program_moves_through_dspys_own_state() -> None:
    dspy = pytest.importorskip("dspy")
    definition = ProgramDefinition(signature="question -> answer", backend="dspy")
    program = build_program(definition, "p", "offline", now=0)
    from bridgepool_worker.programs import _dspy_module

    _dspy_module(program).demos = [dspy.Example(question="1+1?", answer="two")]
    snapshot = json.loads(json.dumps(snapshot_program(program)))
    assert snapshot["dspy_state"]["demos"] == [{"question": "1+1?", "answer": "two"}]
    moved = restore_program(snapshot)
    assert moved.module.dump_state() == program.module.dump_state()


def test_a_dspy_program_does_not_arrive_where_dspy_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridgepool_worker import programs

    monkeypatch.setattr(programs, "dspy_available", lambda: False)
    snapshot = {
        "program_id": "p",
        "inputs": ["q"],
        "outputs": ["a"],
        "instructions": "",
        "backend": "dspy",
        "created_at": 0,
        "executions": 0,
    }
    assert error_type(import_programs, [snapshot]) == "dspy_unavailable"


# -- hooks in handler modules, settings -------------------------------------------------------


def test_two_modules_may_not_hook_the_same_state_key(tmp_path: Path) -> None:
    text = textwrap.dedent(
        """
        from bridgepool_worker import state_exporter

        @state_exporter("model")
        def save(value):
            return value
        """
    )
    (tmp_path / "one_hooks.py").write_text(text)
    (tmp_path / "two_hooks.py").write_text(text)
    registry = CommandRegistry()
    registry.load_modules([str(tmp_path / "one_hooks.py")])  # hooks alone are a module's use
    assert "model" in registry.state_hooks.exporters
    with pytest.raises(HandlerLoadError, match="'model' already has an exporter"):
        registry.load_modules([str(tmp_path / "two_hooks.py")])


def test_move_settings_come_from_their_variables() -> None:
    config = load_config(
        [],
        {
            "BRIDGEPOOL_WORKER_MAX_SESSION_STATE_BYTES": "2048",
            "BRIDGEPOOL_WORKER_MOVE_FREEZE_SECONDS": "1.5",
            "BRIDGEPOOL_WORKER_MOVE_PENDING_SECONDS": "3",
            "BRIDGEPOOL_WORKER_MOVE_WAIT_SECONDS": "0.25",
        },
    )
    assert (
        config.max_session_state_bytes,
        config.move_freeze_seconds,
        config.move_pending_seconds,
        config.move_wait_seconds,
    ) == (2048, 1.5, 3, 0.25)
    with pytest.raises(ConfigError, match="BRIDGEPOOL_WORKER_MOVE_FREEZE_SECONDS='0'"):
        load_config([], {"BRIDGEPOOL_WORKER_MOVE_FREEZE_SECONDS": "0"})

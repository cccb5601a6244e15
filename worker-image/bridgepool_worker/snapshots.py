"""A session's state as JSON for a move, and back: its handler state through
the modules' state hooks, and its programs.

Handler state moves key by key. A key with an exporter moves as what the
exporter returns; any other key moves as its own value, which must come back
from JSON unchanged (a tuple, a set, a non-string dict key or an object does
not: give its key hooks). A hook's :class:`~bridgepool_worker.sdk.MoveRefused`
refuses the move. Every failure names the key, and leaves the session as it
was: these functions only read it.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from bridgepool.errors import BridgePoolError, ErrorCategory, validation_problems
from bridgepool.moves.wire import EXPORT_FAILED, MOVE_REFUSED, UNSERIALIZABLE_STATE
from bridgepool_worker.programs import Program, restore_program, snapshot_program
from bridgepool_worker.registry import StateHooks
from bridgepool_worker.sdk import MoveRefused


def _failed(type_: str, message: str, **context: Any) -> BridgePoolError:
    return BridgePoolError.make(ErrorCategory.PYTHON, type_, message, status=422, **context)


def _round_trips(value: Any) -> bool:
    try:
        return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
    except (TypeError, ValueError):
        return False


def export_handler_state(state: dict[str, Any], hooks: StateHooks) -> dict[str, Any]:
    """The session's handler state as JSON values, key by key."""
    exported: dict[str, Any] = {}
    for key, value in state.items():
        exporter = hooks.exporters.get(key)
        if exporter is None:
            exported[key] = value
        else:
            try:
                exported[key] = exporter(value)
            except MoveRefused as refusal:
                reason = str(refusal) or "refused by its state exporter"
                raise _failed(
                    MOVE_REFUSED,
                    f"state key {key!r} refuses to move: {reason}",
                    key=key,
                    reason=reason,
                ) from None
            except Exception as exc:
                raise _failed(
                    EXPORT_FAILED,
                    f"the exporter of state key {key!r} failed: {type(exc).__name__}: {exc}",
                    key=key,
                ) from None
        if not _round_trips(exported[key]):
            how = "its exporter's result" if exporter is not None else "its value"
            raise _failed(
                UNSERIALIZABLE_STATE,
                f"state key {key!r} cannot move: {how} ({type(exported[key]).__name__}) does "
                "not survive JSON unchanged; give the key a @state_exporter/@state_importer",
                key=key,
            )
    return exported


def import_handler_state(data: dict[str, Any], hooks: StateHooks) -> dict[str, Any]:
    """The handler state rebuilt from its JSON, through the importers."""
    state: dict[str, Any] = {}
    for key, value in data.items():
        importer = hooks.importers.get(key)
        try:
            state[key] = value if importer is None else importer(value)
        except Exception as exc:
            raise _failed(
                "import_failed",
                f"the importer of state key {key!r} failed: {type(exc).__name__}: {exc}",
                key=key,
            ) from None
    return state


def export_programs(programs: dict[str, Any]) -> list[dict[str, Any]]:
    return [snapshot_program(p) for p in programs.values() if isinstance(p, Program)]


def import_programs(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Programs by id, rebuilt; a 422 ``import_failed`` names a malformed one."""
    table: dict[str, Any] = {}
    for index, item in enumerate(items):
        try:
            program = restore_program(item)
        except ValidationError as exc:
            raise _failed(
                "import_failed",
                f"program {index} cannot be rebuilt: "
                f"{validation_problems(exc, where_none='program')}",
                program=index,
            ) from None
        table[program.program_id] = program
    return table

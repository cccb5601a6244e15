"""The mover's side of one move, as a pure rule: after each step and its
outcome, which steps come next. The steps run against the workers through
:class:`~bridgepool.moves.client.MoveClient` (:mod:`bridgepool.moves.mover`).

    export (source)  ok -> import        failed -> stop (nothing to undo)
    import (target)  ok -> commit        failed -> abort the source, stop
    commit (source)  ok -> done          no answer, or ``move_committing``:
                                           stop; the commit may be under way,
                                           and the source finishes or thaws it
                                         refused -> abort the target, abort
                                           the source, stop

An abort that fails is not retried: a frozen session thaws and a pending
copy is dropped on their own when their time runs out. So a mover that dies
at any point loses nothing, and no session ever lives in two places.
"""

from __future__ import annotations

from typing import Literal

from bridgepool.moves.client import UNREACHABLE
from bridgepool.moves.wire import MOVE_COMMITTING

Step = Literal["export", "import", "commit", "abort-target", "abort-source"]


def next_steps(step: Step, error_type: str | None) -> tuple[Step, ...]:
    """The steps after ``step`` ended with ``error_type`` (None: it succeeded).
    A failed export, import or commit ends the move after the aborts listed;
    nothing follows an abort or a commit that succeeded."""
    if step == "export":
        return ("import",) if error_type is None else ()
    if step == "import":
        return ("commit",) if error_type is None else ("abort-source",)
    if step == "commit":
        if error_type is None or error_type in (UNREACHABLE, MOVE_COMMITTING):
            return ()
        return ("abort-target", "abort-source")
    return ()

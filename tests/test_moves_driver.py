"""The mover's step rules (``bridgepool.moves.driver``), by table: what
follows each step's outcome, and what is undone when one fails."""

from __future__ import annotations

import pytest

from bridgepool.moves.driver import Step, next_steps


@pytest.mark.parametrize(
    ("step", "error_type", "then"),
    [
        ("export", None, ("import",)),
        # Nothing was frozen, or the source thaws it by itself: nothing to undo.
        ("export", "session_busy", ()),
        ("export", "session_too_large", ()),
        ("export", "unreachable", ()),
        ("import", None, ("commit",)),
        # The source's session is frozen: thaw it.
        ("import", "worker_full", ("abort-source",)),
        ("import", "unreachable", ("abort-source",)),
        ("commit", None, ()),
        # The commit may be under way: the source finishes or thaws it itself.
        ("commit", "unreachable", ()),
        ("commit", "move_committing", ()),
        # Refused: drop the target's copy, then thaw the source.
        ("commit", "activation_refused", ("abort-target", "abort-source")),
        ("commit", "move_not_found", ("abort-target", "abort-source")),
        # An abort that fails is not retried (the freeze and the copy expire).
        ("abort-target", None, ()),
        ("abort-source", "unreachable", ()),
    ],
)
def test_what_follows_each_step(step: Step, error_type: str | None, then: tuple[Step, ...]) -> None:
    assert next_steps(step, error_type) == then


def test_a_move_that_succeeds_runs_export_import_commit_and_nothing_else() -> None:
    steps: list[Step] = ["export"]
    ran: list[Step] = []
    while steps:
        step = steps.pop(0)
        ran.append(step)
        steps += next_steps(step, None)
    assert ran == ["export", "import", "commit"]

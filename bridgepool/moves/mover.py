"""Moving a draining worker's sessions to workers that stay, over the
workers' move protocol (:mod:`bridgepool.moves.wire`; the worker's side in
its ``moves`` module):

    export on the source (the session freezes; its calls wait)
    import on the target (a pending copy, not served yet)
    commit on the source (the source makes the target's copy live, then keeps
                          a tombstone naming the new holder)

A step that fails before the commit is undone on both workers (abort), so
the session goes on where it was (the rules: :mod:`bridgepool.moves.driver`).
A mover that dies part way loses nothing: the source thaws its frozen
session and the target drops its pending copy on their own, and a commit,
once asked for, is finished by the source.

The planner decides which workers' sessions move and where they may go;
an executor (the operator, the local supervisor) carries it out with this
module. A session that cannot move (too large, refused by its handler's
hook, not serialisable) stays until it ends or the drain times out, as
before moves existed. The source worker remembers why (its sessions list
says so), so no mover tries it again. Every call carries the pool's key
(``worker_http``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridgepool.moves.client import MoveClient, StepFailed
from bridgepool.moves.driver import Step, next_steps
from bridgepool.moves.wire import CANNOT_MOVE, CommitRequest, MoveRef, SessionExport
from bridgepool.placement import Target, home_of
from bridgepool.worker_http import WorkerHttp

log = logging.getLogger("bridgepool.mover")


@dataclass
class MoveReport:
    """What one round of moves off one worker did."""

    moved: dict[str, str] = field(default_factory=dict)  # session -> new holder
    cannot_move: dict[str, str] = field(default_factory=dict)  # session -> why, for good
    failed: dict[str, str] = field(default_factory=dict)  # session -> why, try again later

    def counts(self) -> dict[str, int]:
        """How many sessions had each outcome (moved, cannot-move, failed), where any did."""
        outcomes = {"moved": self.moved, "cannot-move": self.cannot_move, "failed": self.failed}
        return {outcome: len(sessions) for outcome, sessions in outcomes.items() if sessions}


async def sessions_of(client: MoveClient, worker_url: str) -> list[str]:
    """The sessions a worker holds that may move: not being moved already,
    and not known by the worker to be unable to."""
    listed = await client.sessions(worker_url)
    if listed is None:
        return []
    return [s.session_id for s in listed.sessions if not s.moving and s.unmovable is None]


async def move_session(
    client: MoveClient, session_id: str, source_url: str, target_url: str
) -> None:
    """Move one session from source to target, step by step as
    :func:`~bridgepool.moves.driver.next_steps` says; raises the first
    :class:`StepFailed` (after the undoing it calls for) when it cannot."""
    exported: SessionExport | None = None
    failure: StepFailed | None = None
    steps: list[Step] = ["export"]
    while steps:
        step = steps.pop(0)
        try:
            if step == "export":
                exported = await client.export(source_url, session_id)
            else:
                assert exported is not None
                move = MoveRef(move_id=exported.move.move_id)
                if step == "import":
                    await client.import_(target_url, session_id, exported.envelope)
                elif step == "commit":
                    commit = CommitRequest(move_id=move.move_id, holder_url=target_url)
                    await client.commit(source_url, session_id, commit)
                else:
                    worker = source_url if step == "abort-source" else target_url
                    await client.abort(worker, session_id, move)
            error_type = None
        except StepFailed as err:
            if step.startswith("abort"):  # the freeze or the pending copy expires by itself
                log.info("abort not confirmed: %s", err)
                continue
            failure, error_type = err, err.error_type
        steps += next_steps(step, error_type)
    if failure is not None:
        raise failure


async def move_off(
    http: WorkerHttp,
    source_url: str,
    targets: Sequence[Target],
    *,
    budget_seconds: float,
    step_timeout: float,
) -> MoveReport:
    """Move the source's sessions to ``targets``, each to its
    home among them (where a router would place it afresh:
    :mod:`bridgepool.placement`), until done or the budget is spent."""
    report = MoveReport()
    if not targets:
        return report
    client = MoveClient(http, step_timeout)
    by_name = {t.name: t for t in targets}
    deadline = time.monotonic() + budget_seconds
    for session_id in await sessions_of(client, source_url):
        if time.monotonic() >= deadline:
            break
        name = home_of(session_id, by_name)
        assert name is not None
        try:
            await move_session(client, session_id, source_url, by_name[name].url)
        except StepFailed as err:
            if err.error_type in CANNOT_MOVE:
                report.cannot_move[session_id] = err.error_type
            else:
                report.failed[session_id] = str(err)
            continue
        report.moved[session_id] = name
    return report

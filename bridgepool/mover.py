"""Moving a draining worker's sessions to workers that stay, over the
workers' move protocol (``bridgepool.protocol``, steps explained in the
worker's ``moves`` module):

    export on the source (the session freezes; its calls wait)
    import on the target (a pending copy, not served yet)
    commit on the source (the source makes the target's copy live, then keeps
                          a tombstone naming the new holder)

A step that fails before the commit is undone on both workers (abort), so
the session goes on where it was. A mover that dies part way loses nothing:
the source thaws its frozen session and the target drops its pending copy
on their own, and a commit, once asked for, is finished by the source.

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
from typing import Any

import aiohttp

from bridgepool.placement import Target, home_of
from bridgepool.protocol import (
    CANNOT_MOVE,
    CommitRequest,
    MoveRef,
    SessionExport,
    SessionsResponse,
)
from bridgepool.worker_http import WorkerHttp

log = logging.getLogger("bridgepool.mover")


@dataclass
class MoveReport:
    """What one round of moves off one worker did."""

    moved: dict[str, str] = field(default_factory=dict)  # session -> new holder
    cannot_move: dict[str, str] = field(default_factory=dict)  # session -> why, for good
    failed: dict[str, str] = field(default_factory=dict)  # session -> why, try again later


class StepFailed(Exception):
    """A move step was refused or did not answer; ``error_type`` says which."""

    def __init__(self, step: str, error_type: str, message: str) -> None:
        super().__init__(f"{step}: {error_type}: {message}")
        self.step = step
        self.error_type = error_type


async def _post(http: WorkerHttp, url: str, body: Any, step: str, seconds: float) -> dict[str, Any]:
    try:
        async with http.post(url, json=body, timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
            answer: dict[str, Any] = await resp.json(content_type=None)
            if resp.status >= 300:
                error = answer.get("error") or {}
                raise StepFailed(step, str(error.get("type")), str(error.get("message")))
            return answer
    except (aiohttp.ClientError, TimeoutError, ValueError) as err:
        raise StepFailed(step, "unreachable", repr(err)) from err


async def sessions_of(http: WorkerHttp, worker_url: str, seconds: float) -> list[str]:
    """The sessions a worker holds that may move: not being moved already,
    and not known by the worker to be unable to."""
    try:
        async with http.get(
            f"{worker_url}/v1/sessions", timeout=aiohttp.ClientTimeout(total=seconds)
        ) as resp:
            if resp.status != 200:
                return []
            listed = SessionsResponse.model_validate(await resp.json())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return []
    return [s.session_id for s in listed.sessions if not s.moving and s.unmovable is None]


async def move_session(
    http: WorkerHttp,
    session_id: str,
    source_url: str,
    target_url: str,
    seconds: float,
) -> None:
    """Move one session from source to target; raises :class:`StepFailed`
    (after undoing what it did) when it cannot."""
    base = f"{source_url}/v1/sessions/{session_id}"
    answer = await _post(http, f"{base}/export", {}, "export", seconds)
    exported = SessionExport.model_validate(answer)
    move = MoveRef(move_id=exported.move.move_id).model_dump()
    target = f"{target_url}/v1/sessions/{session_id}"
    try:
        await _post(
            http, f"{target}/import", exported.envelope.model_dump(mode="json"), "import", seconds
        )
    except StepFailed:
        await _abort(http, f"{base}/abort", move, seconds)
        raise
    commit = CommitRequest(move_id=exported.move.move_id, holder_url=target_url)
    try:
        # 200: moved; 202: the source is still telling the target, and finishes by itself.
        await _post(http, f"{base}/commit", commit.model_dump(), "commit", seconds)
    except StepFailed as err:
        if err.error_type in ("unreachable", "move_committing"):
            raise  # the commit may be under way: the source finishes or thaws it
        await _abort(http, f"{target}/abort", move, seconds)
        await _abort(http, f"{base}/abort", move, seconds)
        raise


async def _abort(http: WorkerHttp, url: str, move: dict[str, Any], seconds: float) -> None:
    try:
        await _post(http, url, move, "abort", seconds)
    except StepFailed as err:  # the freeze or the pending copy expires by itself
        log.info("abort not confirmed: %s", err)


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
    by_name = {t.name: t for t in targets}
    deadline = time.monotonic() + budget_seconds
    for session_id in await sessions_of(http, source_url, step_timeout):
        if time.monotonic() >= deadline:
            break
        name = home_of(session_id, by_name)
        assert name is not None
        try:
            await move_session(http, session_id, source_url, by_name[name].url, step_timeout)
        except StepFailed as err:
            if err.error_type in CANNOT_MOVE:
                report.cannot_move[session_id] = err.error_type
            else:
                report.failed[session_id] = str(err)
            continue
        report.moved[session_id] = name
    return report

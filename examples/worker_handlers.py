"""Example worker commands: ``bridgepool-worker --handlers examples/worker_handlers.py``.

``echo`` returns its args; ``incr`` counts calls in the session (where a
session's state lives); ``fail`` raises, which the caller sees as a 422
``python`` error.
"""

from __future__ import annotations

from typing import Any

from bridgepool_worker import CommandContext, command


@command
async def echo(ctx: CommandContext, args: dict[str, Any]) -> dict[str, Any]:
    return args


@command
async def incr(ctx: CommandContext, args: dict[str, Any]) -> dict[str, int]:
    if ctx.state is None:
        raise ValueError("incr counts per session: send a session_id")
    ctx.state["count"] = ctx.state.get("count", 0) + int(args.get("by", 1))
    return {"count": ctx.state["count"]}


@command
def fail(ctx: CommandContext, args: dict[str, Any]) -> None:
    raise ValueError(args.get("message", "handler failed"))

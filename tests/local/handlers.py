"""The local pool tests' commands: a session counter and work that takes time."""

from __future__ import annotations

import asyncio
from typing import Any

from bridgepool_worker import CommandContext, command


@command
async def incr(ctx: CommandContext, args: dict[str, Any]) -> dict[str, int]:
    """Count up in the session's state, after ``seconds`` of work."""
    if ctx.state is None:
        raise ValueError("incr counts per session: send a session_id")
    await asyncio.sleep(float(args.get("seconds", 0)))
    ctx.state["count"] = ctx.state.get("count", 0) + 1
    return {"count": ctx.state["count"]}


@command
async def work(ctx: CommandContext, args: dict[str, Any]) -> dict[str, str]:
    """Hold a call slot for ``seconds``."""
    await asyncio.sleep(float(args.get("seconds", 1)))
    return {"version": "1"}

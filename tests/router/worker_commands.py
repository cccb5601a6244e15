"""Commands the router tests add to the real worker, beside the example module
(``echo``, ``incr``, ``fail``): ``sleep`` holds a call slot for a while, and
``budget`` answers the time budget the worker received for the call (so a
test sees the timeout the router forwarded).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridgepool_worker import CommandContext, command


@command
async def sleep(ctx: CommandContext, args: dict[str, Any]) -> dict[str, float]:
    seconds = float(args.get("seconds", 0))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@command
async def budget(ctx: CommandContext, args: dict[str, Any]) -> dict[str, float]:
    return {"timeout": ctx.timeout_seconds}

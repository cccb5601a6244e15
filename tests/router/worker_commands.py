"""Commands the router tests add to the real worker, beside the example module
(``echo``, ``incr``, ``fail``): ``sleep`` holds a call slot for a while,
``budget`` answers the time budget the worker received for the call (so a
test sees the timeout the router forwarded), and ``overlap`` holds a slot and
answers how many ``overlap`` calls ran at once meanwhile (so a test sees
whether a worker ever ran more calls than its capacity) and its turn, the order
in which the worker started it (so a test sees which call was served first).
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


_overlapping = 0
_started = 0


@command
async def overlap(ctx: CommandContext, args: dict[str, Any]) -> dict[str, int]:
    global _overlapping, _started
    _overlapping += 1
    _started += 1
    turn = _started
    most = _overlapping
    try:
        for _ in range(10):
            await asyncio.sleep(float(args.get("seconds", 0)) / 10)
            most = max(most, _overlapping)
    finally:
        _overlapping -= 1
    return {"most": most, "turn": turn}


@command
async def budget(ctx: CommandContext, args: dict[str, Any]) -> dict[str, float]:
    return {"timeout": ctx.timeout_seconds}

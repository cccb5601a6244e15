"""Calls waiting for a call slot, first come, first served.

Several routers can share a worker, and each counts only its own calls, so
together they can offer the worker more calls than it has slots. A call sent
with ``X-BridgePool-Wait-For-Slot: true`` waits in this line instead of being
turned away at once. A slot that frees goes straight to the call that has
waited longest. So one router's quick follow-up calls cannot take every free
slot while another router's calls back off and retry: without the line, a
call could starve for seconds behind a busy neighbour's backlog.

The line is short: at most as many calls as the worker has slots. Past that,
and for calls that did not ask to wait, the worker answers 503
``capacity_exceeded`` at once, as it always has.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class SlotLine:
    def __init__(self, limit: int, give_back: Callable[[], None]) -> None:
        """``limit``: how many calls may wait at once. ``give_back``: frees a
        slot that was handed to a call which then stopped waiting for it."""
        self.limit = limit
        self._give_back = give_back
        self._waiting: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def full(self) -> bool:
        return len(self._waiting) >= self.limit

    def hand_over(self) -> bool:
        """Give a slot that is being freed to the call that has waited longest:
        True if a call took it (the slot then stays taken), False if none waits."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    async def wait(self, seconds: float) -> bool:
        """Wait in line up to ``seconds``: True once a slot was handed over (the
        caller then holds it), False if the time ran out first."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter
        except TimeoutError:
            pass  # the slot may still have come just as the time ran out
        except asyncio.CancelledError:
            if _handed(waiter):  # the call went away holding a slot: free it
                self._give_back()
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            if waiter in self._waiting:
                self._waiting.remove(waiter)
        return _handed(waiter)


def _handed(waiter: asyncio.Future[None]) -> bool:
    return waiter.done() and not waiter.cancelled()

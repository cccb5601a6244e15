"""One question asked once at a time: concurrent askers of the same question
share the one answer being fetched (what is elsewhere called single flight).
The router asks the workers where a session lives, and the API server who a
token is and what it may do, this way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedAnswers(Generic[T]):
    def __init__(self) -> None:
        self._pending: dict[Hashable, asyncio.Future[T]] = {}

    async def once(self, key: Hashable, ask: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """The answer to ``key``'s question, and whether this caller asked it
        (False: it waited for another's asking). The asker's failure is every
        waiter's."""
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending), False
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            value = await ask()
            fut.set_result(value)
            return value, True
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved here; the waiters re-raise it
            raise
        finally:
            del self._pending[key]

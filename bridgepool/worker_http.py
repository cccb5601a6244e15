"""HTTP calls to one pool's workers, each with the pool's key: an executor's
(stats, session moves) and a worker's to its peer (an activation).

A worker answers only a caller that shows its pool's key
(:mod:`bridgepool.credentials`). A call goes with the current key; a 401 to it
means the worker has not seen a rotation yet, so the call goes once more with
the previous key. The key an answer came to is the request's own
``Authorization`` (:func:`sent_key`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp

from bridgepool.credentials import Keys, bearer, presented_key
from bridgepool.protocol import WorkerStats


class WorkerHttp:
    """An HTTP session that presents one pool's keys (none: a worker started
    open, which asks its peers without a key)."""

    def __init__(self, http: aiohttp.ClientSession, keys: Keys | None) -> None:
        self.http = http
        self.keys = keys

    @asynccontextmanager
    async def request(
        self, method: str, url: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """``method url`` with the pool's key (``kwargs`` as aiohttp takes them);
        the answer to the last key tried."""
        if self.keys is None:
            async with self.http.request(method, url, **kwargs) as resp:
                yield resp
            return
        *first, last = self.keys.to_send()
        for key in first:
            resp = await self.http.request(method, url, headers=_auth(key), **kwargs)
            if resp.status != 401:
                async with resp:
                    yield resp
                return
            resp.release()
        async with self.http.request(method, url, headers=_auth(last), **kwargs) as resp:
            yield resp

    def get(self, url: str, **kwargs: Any) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self.request("POST", url, **kwargs)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": bearer(key)}


def sent_key(response: aiohttp.ClientResponse) -> str | None:
    """The key the request that got ``response`` showed, if any."""
    return presented_key(response.request_info.headers.get("Authorization"))


async def fetch_stats(http: WorkerHttp, worker_url: str) -> WorkerStats | None:
    """A worker's ``GET /v1/stats``, or None when it does not answer them
    (unreachable, slow past the session's timeout, or refusing)."""
    try:
        async with http.get(worker_url + "/v1/stats") as resp:
            if resp.status != 200:
                return None
            return WorkerStats.model_validate(await resp.json())
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None

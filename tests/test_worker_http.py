"""The operator's calls to workers carry the pool's key, and go once more with
the previous key when a worker that has not seen a rotation yet refuses them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridgepool.credentials import Keys, bearer, new_key
from bridgepool.worker_http import WorkerHttp

OLD, NEW = new_key(), new_key()

Serve = Callable[[web.Application], Awaitable[TestServer]]


def worker_taking(key: str, seen: list[str | None]) -> web.Application:
    """A worker that takes ``key`` only, noting the Authorization of every call."""

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != bearer(key):
            return web.json_response({"error": {"type": "unauthenticated"}}, status=401)
        return web.json_response({"echo": await request.json() if request.can_read_body else None})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


@pytest.mark.parametrize(
    ("worker_key", "keys", "sent", "status"),
    [
        pytest.param(NEW, Keys(NEW, previous=OLD), [NEW], 200, id="current taken"),
        pytest.param(OLD, Keys(NEW, previous=OLD), [NEW, OLD], 200, id="rotation not seen yet"),
        pytest.param(OLD, Keys(NEW), [NEW], 401, id="no previous key: once"),
        pytest.param(new_key(), Keys(NEW, previous=OLD), [NEW, OLD], 401, id="neither: twice"),
    ],
)
async def test_a_refused_call_goes_once_more_with_the_previous_key(
    aiohttp_server: Serve, worker_key: str, keys: Keys, sent: list[str], status: int
) -> None:
    seen: list[str | None] = []
    server = await aiohttp_server(worker_taking(worker_key, seen))
    async with aiohttp.ClientSession() as session:
        http = WorkerHttp(session, keys)
        async with http.post(str(server.make_url("/v1/sessions/s/export")), json={"a": 1}) as resp:
            assert resp.status == status
            answer = await resp.json()
    assert seen == [bearer(key) for key in sent]
    if status == 200:
        assert answer == {"echo": {"a": 1}}  # the body went again with the second try


async def test_a_get_carries_the_key_too(aiohttp_server: Serve) -> None:
    seen: list[str | None] = []
    server = await aiohttp_server(worker_taking(NEW, seen))
    async with (
        aiohttp.ClientSession() as session,
        WorkerHttp(session, Keys(NEW)).get(str(server.make_url("/v1/stats"))) as resp,
    ):
        assert resp.status == 200
    assert seen == [bearer(NEW)]

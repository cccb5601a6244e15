"""The bare forwarder baseline (benchmarks/forwarder.py) passes calls through as
sent, showing the pool's key upstream when it has one, as the router does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from benchmarks.forwarder import create_app
from bridgepool.credentials import new_key

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
ClientFactory = Callable[[web.Application], Awaitable[TestClient[web.Request, web.Application]]]


async def echo(request: web.Request) -> web.Response:
    seen = {
        "path": request.path_qs,
        "body": (await request.read()).decode(),
        "authorization": request.headers.get("Authorization"),
    }
    return web.json_response(seen, status=201)


@pytest.mark.parametrize("key", [None, new_key()], ids=["no key", "key"])
async def test_the_forwarder_passes_a_call_through(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory, key: str | None
) -> None:
    upstream = web.Application()
    upstream.router.add_post("/{tail:.*}", echo)
    server = await aiohttp_server(upstream)
    forwarder = await aiohttp_client(create_app(str(server.make_url("/")), key))
    answer = await forwarder.post("/v1/execute?x=1", data=b'{"command": "ping"}')
    assert answer.status == 201
    assert await answer.json() == {
        "path": "/v1/execute?x=1",
        "body": '{"command": "ping"}',
        "authorization": None if key is None else f"Bearer {key}",
    }

"""The bare forwarder baseline (benchmarks/forwarder.py) passes calls through as sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from benchmarks.forwarder import create_app


async def test_the_forwarder_passes_a_call_through(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]],
    aiohttp_client: Callable[
        [web.Application], Awaitable[TestClient[web.Request, web.Application]]
    ],
) -> None:
    async def echo(request: web.Request) -> web.Response:
        seen = {"path": request.path_qs, "body": (await request.read()).decode()}
        return web.json_response(seen, status=201)

    upstream = web.Application()
    upstream.router.add_post("/{tail:.*}", echo)
    server = await aiohttp_server(upstream)
    forwarder = await aiohttp_client(create_app(str(server.make_url("/"))))
    answer = await forwarder.post("/v1/execute?x=1", data=b'{"command": "ping"}')
    assert answer.status == 201
    assert await answer.json() == {"path": "/v1/execute?x=1", "body": '{"command": "ping"}'}

"""A bare aiohttp forwarder: the router's own stack with none of its logic.

An aiohttp server and one ClientSession (set up as the router sets up its own)
on uvloop, as the router runs. Every request goes to one upstream with its
method, path and body, and the upstream's answer comes back. No routing,
validation, retries or metrics: what it costs is what the stack costs.

    .venv/bin/python -m benchmarks.forwarder --port 8001 --upstream http://127.0.0.1:9000
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator

import aiohttp
import uvloop
from aiohttp import web

UPSTREAM = web.AppKey("upstream", str)
HTTP = web.AppKey("http", aiohttp.ClientSession)
JSON = {"Content-Type": "application/json"}


async def forward(request: web.Request) -> web.Response:
    url = request.app[UPSTREAM] + request.path_qs
    body = await request.read()
    async with request.app[HTTP].request(request.method, url, data=body, headers=JSON) as answer:
        return web.Response(body=await answer.read(), status=answer.status, headers=JSON)


async def client_session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=256)
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=jar
    ) as http:
        app[HTTP] = http
        yield


def create_app(upstream: str) -> web.Application:
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000")
    args = parser.parse_args()
    web.run_app(
        create_app(args.upstream),
        loop=uvloop.new_event_loop(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()

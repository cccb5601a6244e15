"""A bare aiohttp forwarder: the router's own stack with none of its logic.

An aiohttp server and one ClientSession (set up as the router sets up its own)
on uvloop, as the router runs. Every request goes to one upstream with its
method, path and body, and the upstream's answer comes back. No routing,
validation, retries or metrics: what it costs is what the stack costs.

Workers are closed by default, so like the router it shows the pool's key to
the upstream: given ``--keys-dir`` (a pool's key directory, as a worker mounts
it), every call it passes on carries ``Authorization: Bearer KEY``. The key is
read once at start and the header is part of a fixed dict, so all it adds to a
call is one header written upstream, as the router writes one; the router also
looks the pool's key up per call, which is part of what it is measured for.

    .venv/bin/python -m benchmarks.forwarder --port 8001 --upstream http://127.0.0.1:9000 \
        [--keys-dir DIR]
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web

from bridgepool.credentials import bearer, read_keys

UPSTREAM = web.AppKey("upstream", str)
HTTP = web.AppKey("http", aiohttp.ClientSession)
# The headers of every call passed on: JSON, and the pool's key when given.
HEADERS = web.AppKey("headers", Mapping[str, str])
JSON = {"Content-Type": "application/json"}


async def forward(request: web.Request) -> web.Response:
    app = request.app
    url = app[UPSTREAM] + request.path_qs
    body = await request.read()
    async with app[HTTP].request(request.method, url, data=body, headers=app[HEADERS]) as answer:
        return web.Response(body=await answer.read(), status=answer.status, headers=JSON)


async def client_session(app: web.Application) -> AsyncIterator[None]:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=256)
    jar = aiohttp.DummyCookieJar()
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, cookie_jar=jar
    ) as http:
        app[HTTP] = http
        yield


def create_app(upstream: str, key: str | None = None) -> web.Application:
    """The forwarder to ``upstream``, showing ``key`` (a pool's key) on every call."""
    app = web.Application()
    app[UPSTREAM] = upstream.rstrip("/")
    app[HEADERS] = JSON if key is None else {**JSON, "Authorization": bearer(key)}
    app.cleanup_ctx.append(client_session)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="base URL, e.g. http://127.0.0.1:9000")
    parser.add_argument(
        "--keys-dir",
        type=Path,
        metavar="DIR",
        help="a pool's key directory: every call shows its key (file key) upstream",
    )
    args = parser.parse_args()
    key = None if args.keys_dir is None else read_keys(args.keys_dir).current
    web.run_app(
        create_app(args.upstream, key),
        loop=uvloop.new_event_loop(),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
    )


if __name__ == "__main__":
    main()

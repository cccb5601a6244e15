"""Malformed and hostile requests against a real router and worker, over raw sockets.

Each row of the table writes bytes no well-behaved client would, then checks
the router's answer (or that it closed the connection without one), that the
router still answers a normal call, and that the hostile bytes never became a
call: the worker's own count of calls and the router's count of dispatched
calls grow only by what the row's valid calls and the normal call account for,
and nothing is left in flight.

Where a row must wait for the router's body deadline, it asks for a short call
budget (``X-BridgePool-Timeout``): a body must arrive within its call's budget.

Beside the table: a client that disconnects mid-call (the router finishes the
call and nothing stays in flight), slowloris clients trickling request heads
(others are served meanwhile), and the header timeout that closes them.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bridgepool.credentials import KeyDir, PoolKeys
from bridgepool.protocol import DEFAULT_MAX_BODY_BYTES
from bridgepool_router.app import RouterConfig, create_app
from bridgepool_router.discovery.static import StaticDiscovery
from tests.router.conftest import FAST_ROUTING, Proc, Processes

EXECUTE = "/v1/pools/demo/execute"
PING = b'{"command": "ping"}'
LIMIT = DEFAULT_MAX_BODY_BYTES  # the router's body limit
SHORT_BUDGET = "X-BridgePool-Timeout: 0.5\r\n"  # for rows that wait for the body deadline
CHUNKED = "Transfer-Encoding: chunked\r\n"
NO_ANSWER_SECONDS = 30  # not a timing check: how long a stuck exchange takes to fail


@dataclass(frozen=True)
class Stack:
    router: Proc
    worker: Proc
    procs: Processes  # the release's keys: the worker answers only its pool's key


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    procs = Processes(tmp_path_factory.mktemp("hostile"))
    try:
        worker = procs.worker(capacity=4)
        pools = procs.write_pools({"demo": {"urls": [worker.url], "routing": FAST_ROUTING}})
        yield Stack(procs.router(pools), worker, procs)
    finally:
        procs.close()


# -- raw HTTP ---------------------------------------------------------------------------


def post(
    body: bytes, headers: str = "", *, length: int | None = None, path: str = EXECUTE
) -> bytes:
    """A POST of a call (by default an anonymous one); ``length`` overrides the
    Content-Length (None: the body's own), and headers naming Content-Length or
    Transfer-Encoding replace it."""
    framing = "content-length" in headers.lower() or "transfer-encoding" in headers.lower()
    if not framing:
        headers += f"Content-Length: {len(body) if length is None else length}\r\n"
    head = f"POST {path} HTTP/1.1\r\nHost: router\r\nContent-Type: application/json\r\n"
    return (head + headers + "\r\n").encode() + body


def chunked(*chunks: bytes, end: bytes = b"0\r\n\r\n") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + end


@dataclass(frozen=True)
class Answer:
    status: int
    head: bytes
    body: bytes

    def error_type(self) -> str | None:
        """The structured error's type, or None for aiohttp's own plain-text refusal."""
        if b"application/json" not in self.head.lower():
            return None
        error = json.loads(self.body)["error"]
        return None if error is None else str(error["type"])


async def read_answer(reader: asyncio.StreamReader) -> Answer | None:
    """One HTTP response, or None if the router closed the connection without one."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        assert exc.partial == b"", exc.partial
        return None
    except ConnectionResetError:
        return None
    length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    body = await reader.readexactly(int(length.group(1))) if length else b""
    return Answer(int(head.split(b" ", 2)[1]), head, body)


async def exchange(port: int, data: bytes, then: Literal["wait", "eof"]) -> Answer | None:
    """Write ``data``; then either wait for the answer with the connection open, or
    half-close it first (the client has nothing more to send)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        if then == "eof":
            writer.write_eof()
        # A bound so a router that waits forever fails the row instead of hanging it.
        async with asyncio.timeout(NO_ANSWER_SECONDS):
            return await read_answer(reader)
    finally:
        writer.close()


# -- what the worker and the router saw ---------------------------------------------------


@dataclass(frozen=True)
class Seen:
    worker_calls: int  # calls the worker answered (its /v1/stats)
    dispatched: float  # calls the router handed to its dispatcher (requests_total)
    router_in_flight: int
    worker_in_flight: int


async def seen(http: httpx.AsyncClient, stack: Stack) -> Seen:
    stats = (
        await http.get(f"{stack.worker.url}/v1/stats", headers=stack.procs.key_header())
    ).json()
    pool = (await http.get(f"{stack.router.url}/v1/pools/demo")).json()
    metrics = (await http.get(f"{stack.router.url}/metrics")).text
    dispatched = sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "bridgepool_router_requests"
        for sample in family.samples
        if sample.name == "bridgepool_router_requests_total"
    )
    return Seen(
        worker_calls=stats["requests_total"],
        dispatched=dispatched,
        router_in_flight=sum(w["in_flight"] for w in pool["workers"]),
        worker_in_flight=stats["in_flight"],
    )


async def normal_call(http: httpx.AsyncClient, stack: Stack) -> None:
    r = await http.post(f"{stack.router.url}{EXECUTE}", content=PING)
    assert r.status_code == 200, r.text
    assert r.json()["result"]["pong"] is True


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


# -- the table ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    data: bytes
    status: int | None  # None: the router closes the connection without an answer
    error_type: str | None = None  # the structured error's type; None: none or aiohttp's 400
    then: Literal["wait", "eof"] = "wait"
    calls: int = 0  # valid calls in the row, which do reach the worker


OVER_LIMIT = b'{"command": "ping", "args": {"pad": "' + b"x" * LIMIT + b'"}}'
HEAD_LIMIT = 64 * 1024  # the router's limit on a request line and a header (cli.py)
NESTED = b"[" * 100_000 + b"]" * 100_000


def in_session(session_id: str) -> str:
    """The path of a call in a session whose id is given as it stands in the URL."""
    return f"/v1/pools/demo/sessions/{session_id}/execute"


BOMB = gzip.compress(b'{"command": "ping", "args": {"pad": "' + b"0" * 64 * LIMIT + b'"}}')

ROWS = {
    # oversized heads: refused by aiohttp's parser before any handler runs
    "header_value_over_limit": Row(post(PING, "X-Pad: " + "a" * (HEAD_LIMIT + 100) + "\r\n"), 400),
    "200_headers": Row(post(PING, "".join(f"X-H{i}: v\r\n" for i in range(200))), 400),
    "request_line_over_limit": Row(
        b"POST /v1/pools/demo/%s/execute HTTP/1.1\r\nHost: r\r\n\r\n" % (b"a" * (HEAD_LIMIT + 100)),
        400,
    ),
    # long heads under the limit reach the router, which names what is wrong
    "header_value_over_8k": Row(post(PING, "X-Pad: " + "a" * 9000 + "\r\n"), 200, calls=1),
    "session_id_10k": Row(post(PING, path=in_session("a" * 10_000)), 400, "invalid_session_id"),
    # session ids outside the rule (bridgepool.names), before anything is sent
    "session_id_1000": Row(post(PING, path=in_session("a" * 1000)), 400, "invalid_session_id"),
    "session_id_crlf": Row(
        post(PING, path=in_session("a%0D%0AX-Evil:%201")), 400, "invalid_session_id"
    ),
    "session_id_nul": Row(post(PING, path=in_session("a%00b")), 400, "invalid_session_id"),
    "session_id_slash": Row(post(PING, path=in_session("a%2Fb")), 400, "invalid_session_id"),
    "session_id_in_body_disagrees": Row(
        post(b'{"command": "ping", "session_id": "b"}', path=in_session("a")),
        400,
        "session_mismatch",
    ),
    # names that are not Kubernetes names
    "pool_name_invalid": Row(post(PING, path="/v1/pools/Demo_1/execute"), 400, "invalid_name"),
    "namespace_invalid": Row(
        post(PING, path="/v1/namespaces/NS!/pools/demo/execute"), 400, "invalid_name"
    ),
    "namespaced_call": Row(post(PING, path="/v1/namespaces/default/pools/demo/execute"), 200,
                           calls=1),
    # a body nested past what a JSON parser can follow
    "nested_json": Row(post(NESTED), 400, "invalid_json"),
    # oversized bodies
    "body_over_limit": Row(post(OVER_LIMIT), 413, "body_too_large"),
    "body_over_limit_announced_only": Row(post(b"", length=100 * LIMIT), 413, "body_too_large"),
    "gzip_bomb": Row(post(BOMB, "Content-Encoding: gzip\r\n"), 413, "body_too_large"),
    "gzip_claimed_not_gzip": Row(post(PING, "Content-Encoding: gzip\r\n"), 400, "invalid_body"),
    # bad Content-Length
    "content_length_not_a_number": Row(post(PING, "Content-Length: 19x\r\n"), 400),
    "content_length_negative": Row(post(PING, "Content-Length: -19\r\n"), 400),
    "content_length_twice": Row(post(PING, "Content-Length: 19\r\nContent-Length: 20\r\n"), 400),
    "content_length_over_body_then_eof": Row(post(PING, length=100), None, then="eof"),
    "content_length_over_body_held_open": Row(
        post(PING, SHORT_BUDGET, length=100), 408, "body_timeout"
    ),
    "content_length_under_body": Row(post(PING + b"\x00\x01 trailing junk", length=10), 400),
    # chunked bodies
    "chunked_call": Row(post(chunked(PING[:7], PING[7:]), CHUNKED), 200, calls=1),
    "chunked_bad_size": Row(post(b"zz\r\n" + PING + b"\r\n0\r\n\r\n", CHUNKED), 400),
    "chunked_size_overflow": Row(post(b"1" * 40 + b"\r\n" + PING + b"\r\n0\r\n\r\n", CHUNKED), 400),
    "chunked_and_content_length": Row(post(chunked(PING), CHUNKED + "Content-Length: 24\r\n"), 400),
    "chunked_over_limit": Row(post(chunked(*[b"x" * 65536] * 20), CHUNKED), 413, "body_too_large"),
    "chunked_cut_short_then_eof": Row(post(b"40\r\n" + PING, CHUNKED), None, then="eof"),
    "chunked_cut_short_held_open": Row(
        post(b"40\r\n" + PING, CHUNKED + SHORT_BUDGET), 408, "body_timeout"
    ),
    "transfer_encoding_unknown": Row(post(PING, "Transfer-Encoding: gzip\r\n"), 400),
    # not HTTP at all
    "binary_garbage": Row(bytes(range(256)) + b"\r\n\r\n", 400),
}  # fmt: skip


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
async def test_hostile_request(stack: Stack, http: httpx.AsyncClient, row: Row) -> None:
    before = await seen(http, stack)
    answer = await exchange(stack.router.port, row.data, row.then)
    if row.status is None:
        assert answer is None, answer
    else:
        assert answer is not None, "the router closed the connection without answering"
        assert answer.status == row.status, answer
        assert answer.error_type() == row.error_type, answer
    await normal_call(http, stack)
    after = await seen(http, stack)
    assert after.worker_calls - before.worker_calls == row.calls + 1
    assert after.dispatched - before.dispatched == row.calls + 1
    assert (after.router_in_flight, after.worker_in_flight) == (0, 0)


# -- a client that disconnects mid-call -------------------------------------------------------


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` until it holds; fail (not time out a test runner) if it never does."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never saw {what}")


@pytest.mark.parametrize("how", ["close", "reset"])
async def test_a_client_that_disconnects_mid_call(
    stack: Stack, http: httpx.AsyncClient, how: str
) -> None:
    before = await seen(http, stack)
    body = b'{"command": "sleep", "args": {"seconds": 0.3}}'
    _, writer = await asyncio.open_connection("127.0.0.1", stack.router.port)
    writer.write(post(body))

    async def running() -> bool:
        now = await seen(http, stack)
        return now.router_in_flight == 1 and now.worker_in_flight == 1

    await eventually(running, "the call in flight on the router and the worker")
    if how == "reset":
        writer.transport.abort()  # RST rather than FIN
    else:
        writer.close()

    async def settled() -> bool:
        now = await seen(http, stack)
        return (now.router_in_flight, now.worker_in_flight) == (0, 0) and (
            now.worker_calls == before.worker_calls + 1
        )

    await eventually(settled, "the abandoned call finished and nothing left in flight")
    await normal_call(http, stack)
    assert (await seen(http, stack)).worker_calls == before.worker_calls + 2


# -- slowloris ---------------------------------------------------------------------------------


async def trickle(port: int, stop: asyncio.Event) -> bool:
    """Send a request head a header line at a time, never finishing it, until ``stop``
    is set or the router closes the connection; True if the router closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST {EXECUTE} HTTP/1.1\r\nHost: router\r\n".encode())
        i = 0
        while not stop.is_set():
            writer.write(f"X-Slow-{i}: v\r\n".encode())
            i += 1
            try:
                await writer.drain()
                # The router answering or closing ends the read; the pause between
                # lines is the attack itself.
                data = await asyncio.wait_for(reader.read(65536), 0.1)
            except TimeoutError:
                continue
            except ConnectionError:
                return True
            assert data == b"", f"the router answered an unfinished head: {data!r}"
            return True
        return False
    finally:
        writer.close()


async def test_slowloris_clients_do_not_block_others(stack: Stack, http: httpx.AsyncClient) -> None:
    before = await seen(http, stack)
    stop = asyncio.Event()
    slow = [asyncio.create_task(trickle(stack.router.port, stop)) for _ in range(50)]
    try:
        for _ in range(20):
            await normal_call(http, stack)
    finally:
        stop.set()
    # The premise: every slow client held its connection throughout (the header
    # timeout, 75 s, did not fire).
    assert not any(await asyncio.gather(*slow))
    after = await seen(http, stack)
    assert after.worker_calls - before.worker_calls == 20


async def test_the_header_timeout_closes_a_slowloris_client(stack: Stack) -> None:
    """The router's header timeout is aiohttp's keep-alive timer (``web.run_app``'s
    ``keepalive_timeout``, 75 s in ``bridgepool-router``): armed when a connection
    opens, not reset by trickled bytes. Here the same app runs in this process with a
    short one, so the test sees the connection closed."""
    app = create_app(
        RouterConfig(
            discovery=StaticDiscovery([f"demo={stack.worker.url}"]),
            worker_keys=PoolKeys(KeyDir(stack.procs.release_keys)),
        )
    )
    runner = web.AppRunner(app, keepalive_timeout=0.5, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = int(runner.addresses[0][1])
        async with asyncio.timeout(NO_ANSWER_SECONDS):
            assert await trickle(port, asyncio.Event())
        # ... and a client that completes its head in time is served as usual.
        async with httpx.AsyncClient(timeout=30) as http:
            url = f"http://127.0.0.1:{port}{EXECUTE}"
            await eventually(lambda: _served(http, url), "the in-process router serving a call")
    finally:
        await runner.cleanup()


async def _served(http: httpx.AsyncClient, url: str) -> bool:
    r = await http.post(url, content=PING)
    return r.status_code == 200

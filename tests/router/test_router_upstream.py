"""The router's HTTP client to its workers (``bridgepool_router.upstream``) against
a scripted server over real sockets, on asyncio's loop and on uvloop (the
router's): answers read whole, connections kept alive and reused, and every
connection that cannot be trusted with the next request closed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvloop

from bridgepool.protocol import HEADER_INCARNATION
from bridgepool_router.upstream import Answer, ConnectFailed, Disconnected, Upstream

LOOPS: dict[str, Callable[[Coroutine[Any, Any, None]], None]] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}

Run = Callable[[Callable[[], Awaitable[None]]], None]


@pytest.fixture(params=list(LOOPS))
def run(request: pytest.FixtureRequest) -> Run:
    def run_on_loop(scenario: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            async with asyncio.timeout(10):  # a hung exchange fails the test, not the run
                await scenario()

        LOOPS[request.param](main())

    return run_on_loop


def answer(body: bytes = b"{}", status: str = "200 OK", headers: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body


@dataclass
class Request:
    head: str
    body: bytes


# What the worker does with a request: answer these bytes, then keep the
# connection open or close it; or None: never answer (the connection stays open).
Reply = Callable[[Request], tuple[bytes, bool] | None]


@dataclass
class Worker:
    """A server that answers each request as ``reply`` says, and counts its
    connections: those opened, and those the client closed."""

    reply: Reply
    requests: list[Request] = field(default_factory=list)
    opened: int = 0
    closed_by_client: int = 0
    server: asyncio.Server | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> Worker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                length = re.search(r"(?i)\r\ncontent-length: (\d+)", head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                request = Request(head, body)
                self.requests.append(request)
                self.changed.set()
                reply = self.reply(request)
                if reply is None:
                    await reader.read()  # until the client gives up
                    raise asyncio.IncompleteReadError(b"", None)
                data, close = reply
                writer.write(data)
                await writer.drain()
                if close:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed_by_client += 1
            self.changed.set()
        finally:
            writer.close()

    async def until(self, check: Callable[[], bool]) -> None:
        while not check():
            self.changed.clear()
            await self.changed.wait()

    async def client_closed(self, count: int) -> None:
        """Wait until the client has closed ``count`` connections."""
        await self.until(lambda: self.closed_by_client >= count)


def always(data: bytes, close: bool = False) -> Reply:
    return lambda _: (data, close)


def test_answers_are_read_whole_on_one_kept_alive_connection(run: Run) -> None:
    async def scenario() -> None:
        reply = answer(b'{"ok": true}', headers=f"{HEADER_INCARNATION}: inc-1\r\n")
        async with Worker(always(reply)) as worker:
            upstream = Upstream()
            headers = {"Content-Type": "application/json", "X-Test": "1"}
            first = await upstream.request(
                "POST", worker.url, "/v1/execute", body=b"{}", headers=headers, timeout=5
            )
            second = await upstream.request("GET", worker.url, "/readyz", timeout=5)
            assert first == second == Answer(200, b'{"ok": true}', "inc-1")
            assert worker.opened == 1
            sent = worker.requests[0]
            assert sent.head.startswith("POST /v1/execute HTTP/1.1\r\n")
            host = worker.url.removeprefix("http://")
            for line in (f"Host: {host}", "Content-Type: application/json", "X-Test: 1"):
                assert f"\r\n{line}\r\n" in sent.head
            assert sent.body == b"{}"
            upstream.close()
            await worker.client_closed(1)

    run(scenario)


@pytest.mark.parametrize(
    ("reply", "body"),
    [
        # chunked
        ((b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
          b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n", False), b"abcde"),
        # neither length nor chunks: the body ends where the worker closes
        ((b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", True), b"until the end"),
        # an error status is an answer like any other
        ((answer(b"busy", "503 Service Unavailable"), False), b"busy"),
    ],
)  # fmt: skip
def test_answers_framed_every_way_http_allows(
    run: Run, reply: tuple[bytes, bool], body: bytes
) -> None:
    async def scenario() -> None:
        async with Worker(lambda _: reply) as worker:
            upstream = Upstream()
            got = await upstream.request("GET", worker.url, "/", timeout=5)
            assert got.body == body
            upstream.close()

    run(scenario)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        # not HTTP
        (always(b"SSH-2.0-OpenSSH\r\n\r\n"), Disconnected),
        # the worker goes away before answering, or in the middle of its answer
        (always(b"", close=True), Disconnected),
        (always(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", close=True),
         Disconnected),
        # no answer in time
        (lambda _: None, TimeoutError),
    ],
)  # fmt: skip
def test_a_connection_that_fails_is_closed_and_the_next_request_gets_a_new_one(
    run: Run, reply: Reply, error: type[Exception]
) -> None:
    async def scenario() -> None:
        replies = [reply, always(answer(b"fine"))]
        async with Worker(lambda request: replies[len(worker.requests) - 1](request)) as worker:
            upstream = Upstream()
            with pytest.raises(error):
                await upstream.request("GET", worker.url, "/", timeout=0.3)
            assert (await upstream.request("GET", worker.url, "/", timeout=5)).body == b"fine"
            assert worker.opened == 2
            upstream.close()

    run(scenario)


@pytest.mark.parametrize(
    "reply",
    [
        always(answer(headers="Connection: close\r\n"), close=True),
        always(answer(b"one") + answer(b"two")),  # the second unasked for
    ],
    ids=["connection_close", "unasked_second_answer"],
)
def test_a_connection_whose_answer_ends_it_is_not_used_again(run: Run, reply: Reply) -> None:
    async def scenario() -> None:
        async with Worker(reply) as worker:
            upstream = Upstream()
            for _ in range(2):
                assert (await upstream.request("GET", worker.url, "/", timeout=5)).status == 200
            assert worker.opened == 2
            upstream.close()

    run(scenario)


def test_a_cancelled_request_closes_its_connection(run: Run) -> None:
    async def scenario() -> None:
        async with Worker(lambda _: None) as worker:
            upstream = Upstream()
            task = asyncio.create_task(upstream.request("GET", worker.url, "/", timeout=5))
            await worker.until(lambda: bool(worker.requests))
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await worker.client_closed(1)

    run(scenario)


def test_a_refused_connection_is_connect_failed(run: Run) -> None:
    async def scenario() -> None:
        async with Worker(always(answer())) as worker:
            url = worker.url
        upstream = Upstream()
        with pytest.raises(ConnectFailed):
            await upstream.request("GET", url, "/", timeout=5, connect_timeout=1)
        with pytest.raises(ValueError, match="not an http"):
            await upstream.request("GET", "ftp://example.org", "/", timeout=5)

    run(scenario)


def test_idle_connections_are_bounded_in_number_and_time(run: Run) -> None:
    async def scenario() -> None:
        reply = always(answer())
        async with Worker(reply) as worker:
            upstream = Upstream(max_idle_per_worker=2)
            # four at once: four connections, of which two are kept
            await asyncio.gather(
                *(upstream.request("GET", worker.url, "/", timeout=5) for _ in range(4))
            )
            await worker.client_closed(2)
            upstream.forget(worker.url)  # the worker left: its idle ones go
            await worker.client_closed(4)
        async with Worker(reply) as worker:
            upstream = Upstream(idle_seconds=0)  # idle for any time at all: too long
            await asyncio.gather(
                *(upstream.request("GET", worker.url, "/", timeout=5) for _ in range(3))
            )
            await worker.client_closed(3)

    run(scenario)


def test_a_worker_on_its_way_out_loses_its_idle_connections_not_the_next_request(
    run: Run,
) -> None:
    """close_idle (a health check saw the worker terminating): the idle
    connections go, and the next request opens a fresh one that works."""

    async def scenario() -> None:
        async with Worker(always(answer())) as worker:
            upstream = Upstream()
            await asyncio.gather(
                *(upstream.request("GET", worker.url, "/", timeout=5) for _ in range(2))
            )
            upstream.close_idle(worker.url)
            await worker.client_closed(2)
            answered = await upstream.request("GET", worker.url, "/", timeout=5)
            assert answered.status == 200
            assert worker.opened == 3

    run(scenario)


def test_a_connection_idle_past_the_limit_is_not_reused(run: Run) -> None:
    """The idle limit is checked when a connection is taken, not only when
    one is put back: after a quiet spell longer than the limit (no request
    came to evict it), the next request opens a fresh connection rather than
    meet one the worker may be closing at that moment."""

    async def scenario() -> None:
        async with Worker(always(answer())) as worker:
            now = [100.0]
            upstream = Upstream(idle_seconds=15.0, clock=lambda: now[0])
            await upstream.request("GET", worker.url, "/", timeout=5)
            now[0] += 14.9
            await upstream.request("GET", worker.url, "/", timeout=5)
            assert worker.opened == 1  # reused: idle for less than the limit
            now[0] += 15.0
            answered = await upstream.request("GET", worker.url, "/", timeout=5)
            assert answered.status == 200
            assert worker.opened == 2
            await worker.client_closed(1)  # the stale one was closed, not leaked

    run(scenario)

"""The router's HTTP client to its workers: HTTP/1.1 over keep-alive connections,
a pool of them per worker, on asyncio protocols with a C response parser
(httptools, llhttp's Python binding).

Every call the router forwards goes through here, so this client does only what
that needs: one request at a time per connection, the whole answer read into
memory, a deadline per request. It costs a fraction of aiohttp's ClientSession
per call, and the router is a proxy: that cost is most of its own.

A connection goes back to its worker's pool only after a complete answer that
lets it stay open. One that timed out, was cancelled, broke or answered
something other than HTTP is closed: a late or partial answer on it must never
be read as the next request's.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from bridgepool.credentials import Keys, bearer
from bridgepool.protocol import HEADER_INCARNATION, HEADER_REPLAYED

_INCARNATION = HEADER_INCARNATION.lower().encode()
_REPLAYED = HEADER_REPLAYED.lower().encode()
_AUTHORIZATION = "Authorization"
_FRAMING = (b"content-length", b"transfer-encoding")
_LENGTHS = frozenset(len(name) for name in (_INCARNATION, _REPLAYED, *_FRAMING))


class UpstreamError(Exception):
    """No usable answer from the worker."""


class ConnectFailed(UpstreamError):
    """No connection could be made (refused, unreachable, no such host, or the
    connect timeout passed): the request never reached the worker."""


class Disconnected(UpstreamError):
    """The connection broke, or the answer was not HTTP, after the request was
    sent: the worker may have acted on it."""


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    incarnation: str | None = None  # the worker's HEADER_INCARNATION, if it sent one
    replayed: bool = False  # HEADER_REPLAYED: the kept answer of an earlier attempt


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time, its answer parsed as it
    arrives (the parser calls the ``on_*`` methods)."""

    def __init__(self, host: _Host) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._body: list[bytes] = []
        self._incarnation: str | None = None
        self._replayed = False
        self._headers_done = False
        self._framed = False  # the answer says where its body ends
        self._reusable = True

    # -- asyncio ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self._fail(Disconnected("the worker sent bytes nobody asked for"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(Disconnected(f"the worker's answer is not HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._reusable = False
        self.host.lost(self)
        if self._headers_done and not self._framed and self._waiter is not None:
            # No length and not chunked: the body is whatever came before the close.
            self.on_message_complete()
            return
        detail = f": {exc}" if exc else ""
        self._fail(Disconnected(f"the worker closed the connection{detail}"))

    # -- the parser's callbacks -----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) not in _LENGTHS:  # most headers, at a glance
            return
        name = name.lower()
        if name == _INCARNATION:
            self._incarnation = value.decode("latin-1")
        elif name == _REPLAYED:
            self._replayed = value == b"true"
        elif name in _FRAMING:
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        waiter = self._waiter
        if waiter is None:  # a second answer in one read: nobody asked for it
            self._reusable = False
            return
        answer = Answer(
            self._parser.get_status_code(), b"".join(self._body), self._incarnation, self._replayed
        )
        self._reusable = self._reusable and self._parser.should_keep_alive()
        self._waiter = None
        self._body = []
        self._incarnation = None
        self._headers_done = self._framed = self._replayed = False
        if not waiter.done():
            waiter.set_result(answer)

    # -- the pool's side ---------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        return self._reusable and self.transport is not None and not self.transport.is_closing()

    def send(self, data: bytes, waiter: asyncio.Future[Answer]) -> None:
        assert self.transport is not None and self._waiter is None
        self._waiter = waiter
        self.transport.write(data)

    def time_out(self) -> None:
        self._fail(TimeoutError())

    def close(self) -> None:
        """Close at once; a request still waiting fails."""
        self._fail(Disconnected("the connection was closed"))

    def _fail(self, exc: BaseException) -> None:
        self._reusable = False
        if self.transport is not None:
            self.transport.abort()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class _Host:
    """The connections to one worker (a base URL): idle ones, most recently
    used last, and how to open another."""

    def __init__(self, url: str, max_idle: int, idle_seconds: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: {url!r}")
        self.hostname = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.host_header = parts.netloc
        self.max_idle = max_idle
        self.idle_seconds = idle_seconds
        self.idle: deque[_Connection] = deque()
        self.closed = False

    def take(self, now: float) -> _Connection | None:
        """The most recently used idle connection that is still fit to reuse:
        open, not closed by the worker, and idle for less than
        ``idle_seconds`` (past that, the worker may be closing it just now)."""
        while self.idle:
            conn = self.idle.pop()
            if conn.reusable and now - conn.idle_since < self.idle_seconds:
                return conn
            conn.close()
        return None

    async def connect(self, timeout: float) -> _Connection:  # noqa: ASYNC109 - connect's own
        """A new connection; raises TimeoutError after ``timeout``, ConnectFailed
        when it is refused or cannot be made at all."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(self),
                    self.hostname,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.hostname if self.ssl else None,
                )
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.host_header}: {exc}") from exc
        return conn

    def put_back(self, conn: _Connection, now: float) -> None:
        if self.closed or not conn.reusable:
            conn.close()
            return
        conn.idle_since = now
        self.idle.append(conn)
        # The oldest idle ones go first: past the idle time (the worker may be
        # about to close them) or beyond the number kept.
        while self.idle and (
            len(self.idle) > self.max_idle or now - self.idle[0].idle_since >= self.idle_seconds
        ):
            self.idle.popleft().close()

    def lost(self, conn: _Connection) -> None:
        if conn in self.idle:
            self.idle.remove(conn)

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()

    def close(self) -> None:
        self.closed = True
        self.close_idle()


class Upstream:
    """Requests to workers, each on a kept-alive connection to its worker (or a
    new one). At most ``max_idle_per_worker`` idle connections are kept per
    worker, each for at most ``idle_seconds``, checked when one is taken as
    well as when one is put back. That must stay below the worker's own
    keep-alive timeout (aiohttp's 75 s), so the router never reuses a
    connection the worker may be closing at that moment: a call sent on it
    would fail as a worker error, and a call that is not idempotent could not
    be retried. The connections in use are bounded by the calls the router
    lets a worker have at once (its capacity)."""

    def __init__(
        self,
        *,
        max_idle_per_worker: int = 256,
        idle_seconds: float = 15.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        # Bound once: asking for the running loop per request costs a system call
        # (Python 3.11 checks for a fork).
        self._loop = asyncio.get_running_loop()
        self._now = clock or self._loop.time
        self.max_idle_per_worker = max_idle_per_worker
        self.idle_seconds = idle_seconds
        self._hosts: dict[str, _Host] = {}

    def _host(self, url: str) -> _Host:
        host = self._hosts.get(url)
        if host is None:
            host = self._hosts[url] = _Host(url, self.max_idle_per_worker, self.idle_seconds)
        return host

    async def request(
        self,
        method: str,
        url: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        keys: Keys | None = None,
        timeout: float,  # noqa: ASYNC109 - a deadline for the whole exchange
        connect_timeout: float | None = None,
    ) -> Answer:
        """Send ``method path`` to the worker at base ``url`` and read its answer.

        ``keys``: the pool's keys; the request shows the current one, and is
        sent once more with the previous one when the worker refuses it with
        401 (it has not seen a rotation yet; a refusal runs nothing).

        Raises :class:`ConnectFailed` when no connection could be made within
        ``connect_timeout`` (or at all), ``TimeoutError`` when the whole exchange
        took longer than ``timeout``, :class:`Disconnected` when the connection
        broke or the answer was not HTTP."""
        if keys is None:
            return await self._exchange(method, url, path, body, headers, timeout, connect_timeout)
        deadline = self._loop.time() + timeout
        for key in keys.to_send():
            signed = (
                {**headers, _AUTHORIZATION: bearer(key)}
                if headers
                else {_AUTHORIZATION: bearer(key)}
            )
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise TimeoutError
            answer = await self._exchange(
                method, url, path, body, signed, remaining, connect_timeout
            )
            if answer.status != 401:
                break
        return answer

    async def _exchange(
        self,
        method: str,
        url: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str] | None,
        timeout: float,  # noqa: ASYNC109 - a deadline for the whole exchange
        connect_timeout: float | None,
    ) -> Answer:
        """One request and its answer (:meth:`request`)."""
        loop = self._loop
        deadline = loop.time() + timeout
        host = self._host(url)
        head = f"{method} {path} HTTP/1.1\r\nHost: {host.host_header}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        data = (head + f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1") + body
        conn = host.take(self._now())
        if conn is None:
            limit = timeout if connect_timeout is None else min(connect_timeout, timeout)
            try:
                conn = await host.connect(limit)
            except TimeoutError:
                if connect_timeout is None:
                    raise  # the whole exchange's time ran out while connecting
                raise ConnectFailed(
                    f"connecting to {host.host_header} timed out after {limit:.3f}s"
                ) from None
        waiter: asyncio.Future[Answer] = loop.create_future()
        conn.send(data, waiter)
        timer = loop.call_at(deadline, conn.time_out)
        try:
            answer = await waiter
        except BaseException:  # timed out, cancelled, broken: never reuse it
            conn.close()
            raise
        finally:
            timer.cancel()
        host.put_back(conn, self._now())
        return answer

    def forget(self, url: str) -> None:
        """The worker at ``url`` left: close its idle connections (those in use
        close when their calls end)."""
        host = self._hosts.pop(url, None)
        if host is not None:
            host.close()

    def close_idle(self, url: str) -> None:
        """The worker at ``url`` is on its way out: close the idle connections
        to it (a call then opens a fresh one, refused once it has exited,
        rather than meet a connection the exit resets)."""
        host = self._hosts.get(url)
        if host is not None:
            host.close_idle()

    def close(self) -> None:
        for host in self._hosts.values():
            host.close()
        self._hosts.clear()

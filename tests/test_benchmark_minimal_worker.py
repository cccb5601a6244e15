"""The minimal worker of the router benchmarks (benchmarks/router_overhead.py) is
closed as a real worker is: a path that does not show the pool's key fails its
calls, so no benchmark measures a path production never takes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from benchmarks.router_overhead import PROBES, Target, _WorkerProtocol, send_call, worker_keys
from bridgepool.credentials import derive_pool_key, read_keys

Conns = list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]


@pytest.fixture
async def closed_worker(tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    """A minimal worker taking the run's pool key: its port and the key."""
    keys = worker_keys(tmp_path)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _WorkerProtocol(keys.key), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, keys.key
    finally:
        server.close()
        await server.wait_closed()


async def status(port: int, request: bytes) -> int:
    """The status of ``request``, sent on a connection of its own."""
    conns: Conns = []
    try:
        return await send_call(conns, port, request)
    finally:
        for _, writer in conns:
            writer.close()
            await writer.wait_closed()


def raw(path: str, *headers: str) -> bytes:
    lines = "".join(f"{h}\r\n" for h in headers)
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{lines}Content-Length: 0\r\n\r\n".encode()


def test_the_run_keys_are_the_pools_derived_from_the_release_key(tmp_path: Path) -> None:
    keys = worker_keys(tmp_path)
    release = read_keys(keys.release_dir).current
    assert read_keys(keys.pool_dir).current == keys.key
    assert keys.key == derive_pool_key(release, "default", "bench")


async def test_a_call_without_the_key_is_refused(closed_worker: tuple[int, str]) -> None:
    port, _ = closed_worker
    assert await status(port, Target("t", port, sticky_path=False).request("s")) == 401
    wrong = Target("t", port, sticky_path=False, token="0" * 64).request("s")
    assert await status(port, wrong) == 401
    assert await status(port, raw("/v1/sessions")) == 401


async def test_a_call_with_the_key_is_answered_in_any_header_case(
    closed_worker: tuple[int, str],
) -> None:
    port, key = closed_worker
    keyed = Target("t", port, sticky_path=False, token=key).request("s")
    assert await status(port, keyed) == 200
    # HAProxy sends header names in lower case.
    assert await status(port, raw("/v1/sessions", f"authorization: Bearer {key}")) == 200


@pytest.mark.parametrize("path", PROBES)
async def test_the_probes_answer_anyone(closed_worker: tuple[int, str], path: str) -> None:
    port, _ = closed_worker
    assert await status(port, raw(path)) == 200

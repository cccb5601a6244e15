"""The router's memory with 100,000 sessions in its table, beside the empty router.

One router process, one run. The router is the real ``bridgepool-router`` main
with one benchmark-only route added (``POST /bench/bind``), which binds sessions
straight into a pool's table inside the router process. The worker is
router_overhead's minimal one (it holds no sessions, so the router's look-up of
a new session on the workers is cheap), closed as a real worker is: it answers
only calls that show its pool's key, which the router derives from a release
key directory (``--worker-keys-dir``), as on a cluster. Router on CPU 0; worker
and client on CPU 1.

Filling the table by real calls alone takes a minute or more on one core (each
new session is looked up on the workers first), so the first ``--real`` sessions
(10,000) are opened by real calls, which measures the bytes a session really
costs the router, and the rest are bound in-process through the route.

Printed, the router's resident memory (VmRSS):

* empty: after a warm-up of anonymous calls (connections and caches in place,
  the table empty): the baseline;
* after the real calls, and with the table full (the router's own count of
  sessions, ``GET /v1/pools/bench``, says so);
* expired: after the bindings' idle TTL is lowered in the static file (the
  router re-reads it) and the router's expiry sweep (every 10 s) empties it;
* refilled: as many new sessions again, which shows whether the freed memory
  is reused or the process keeps growing.

Also printed: the latency of an anonymous call with the table empty and full.
A pick weighs each worker's sessions, and the table keeps those counts as
bindings come and go, so a full table should cost a call no more than an empty
one. The table has no hard cap: it is bounded only by the idle TTL (300 s by
default) times the rate at which new sessions arrive; printed last, that bound
at the real-call rate measured here.

    .venv/bin/python -m benchmarks.router_memory [--sessions 100000] [--real 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from aiohttp import web

from benchmarks.router_overhead import (
    POOL,
    Target,
    free_port,
    send_call,
    wait_port,
    worker_keys,
)
from benchmarks.stats import percentile

DEFAULT_TTL_SECONDS = 300.0  # SessionSettings.idle_ttl_seconds' default
EXPIRY_SWEEP_SECONDS = 10.0  # PoolRegistry.expire_sessions' interval
CONNECTIONS = 32
PING = b'{"command": "ping", "args": {}}'
ANONYMOUS = (
    f"POST /v1/pools/{POOL}/execute HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    f"Content-Type: application/json\r\nContent-Length: {len(PING)}\r\n\r\n"
).encode() + PING


# -- the router, with one route for the benchmark -----------------------------------------


async def bind_sessions(request: web.Request) -> web.Response:
    """Bind ``count`` sessions named ``prefix0``... to the pool's first worker."""
    from bridgepool.names import PoolRef
    from bridgepool_router.app import STATE

    state = request.app[STATE]
    assert state.registry is not None
    pool = state.registry.pools[PoolRef.parse(request.query["pool"])]
    worker = next(iter(pool.workers))
    now = state.config.clock()
    prefix = request.query["prefix"]
    for i in range(int(request.query["count"])):
        pool.sessions.bind(f"{prefix}{i}", worker, now)
    return web.json_response({"sessions": len(pool.sessions)})


def run_router(argv: Sequence[str]) -> None:
    """``bridgepool-router``'s own main, its app given the benchmark's route."""
    from bridgepool_router import cli
    from bridgepool_router.app import RouterConfig, create_app

    def app_with_bind_route(config: RouterConfig) -> web.Application:
        app = create_app(config)
        app.router.add_post("/bench/bind", bind_sessions)
        return app

    with mock.patch.object(cli, "create_app", app_with_bind_route):
        cli.main(argv)


@dataclass(frozen=True)
class Router:
    pid: int
    port: int
    pools_file: Path
    worker_url: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def pool(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/v1/pools/{POOL}").json()  # type: ignore[no-any-return]

    def sessions(self) -> int:
        return int(self.pool()["sessions"])

    def bind(self, prefix: str, count: int) -> None:
        params: dict[str, str | int] = {"pool": POOL, "prefix": prefix, "count": count}
        httpx.post(f"{self.url}/bench/bind", params=params, timeout=60).raise_for_status()

    def set_ttl(self, ttl: float) -> None:
        write_pools(self.pools_file, self.worker_url, ttl)


def write_pools(path: Path, worker_url: str, ttl: float) -> None:
    pools = {POOL: {"urls": [worker_url], "sessions": {"idleTtlSeconds": ttl}}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pools": pools}))
    tmp.replace(path)  # atomic: the router never reads half a file


def wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def processes(tmp: Path) -> Iterator[Router]:
    procs: list[subprocess.Popen[bytes]] = []
    keys = worker_keys(tmp)
    try:
        worker_port, router_port = free_port(), free_port()
        code = (
            "from benchmarks.router_overhead import run_worker; "
            f"run_worker({worker_port}, {str(keys.pool_dir)!r})"
        )
        procs.append(subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", code]))
        worker_url = f"http://127.0.0.1:{worker_port}"
        pools_file = tmp / "pools.json"
        write_pools(pools_file, worker_url, DEFAULT_TTL_SECONDS)
        argv = ["--host", "127.0.0.1", "--port", str(router_port),
                "--static-file", str(pools_file), "--static-reload-seconds", "0.2",
                "--worker-keys-dir", str(keys.release_dir), "--log-level", "warning"]  # fmt: skip
        code = f"from benchmarks.router_memory import run_router; run_router({argv!r})"
        # taskset execs Python: the pid is the router's
        procs.append(subprocess.Popen(["taskset", "-c", "0", sys.executable, "-c", code]))
        router = Router(procs[-1].pid, router_port, pools_file, worker_url)
        for port in (worker_port, router_port):
            wait_port(port)
        wait(
            lambda: all(w["state"] != "unknown" for w in router.pool()["workers"]),
            "the router's first health check",
        )
        yield router
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- load -----------------------------------------------------------------------------------


async def drive(port: int, requests: Iterator[bytes]) -> int:
    """Send every request over ``CONNECTIONS`` connections; returns how many were not
    answered 200."""
    failed = 0

    async def client() -> None:
        nonlocal failed
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for request in requests:
            if await send_call(conns, port, request) != 200:
                failed += 1
        for _, writer in conns:
            writer.close()

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return failed


def new_sessions(port: int, prefix: str, count: int) -> Iterator[bytes]:
    target = Target("router", port, sticky_path=True)
    return (target.request(f"{prefix}{i}") for i in range(count))


async def anonymous_latency(port: int, calls: int) -> tuple[float, float]:
    """p50 and p99 (ms) of ``calls`` anonymous calls, one at a time."""
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies = []
    for _ in range(calls):
        start = time.perf_counter()
        assert await send_call(conns, port, ANONYMOUS) == 200
        latencies.append((time.perf_counter() - start) * 1000)
    for _, writer in conns:
        writer.close()
    return percentile(latencies, 0.5), percentile(latencies, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions in the table")
    parser.add_argument("--real", type=int, default=10_000, help="of them opened by real calls")
    args = parser.parse_args()
    n, real = args.sessions, min(args.real, args.sessions)
    os.sched_setaffinity(0, {1})
    rss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmpdir, processes(Path(tmpdir)) as router:
        port = router.port
        rss["started"] = router.rss_mib()
        failed = asyncio.run(drive(port, iter([ANONYMOUS] * 5000)))  # warm-up
        assert router.sessions() == 0
        empty_latency = asyncio.run(anonymous_latency(port, 500))
        rss["empty"] = router.rss_mib()
        start = time.perf_counter()
        failed += asyncio.run(drive(port, new_sessions(port, "m", real)))
        real_rate = real / (time.perf_counter() - start)
        wait(lambda: router.sessions() == real, f"{real} sessions in the table")
        rss["real"] = router.rss_mib()
        router.bind("b", n - real)
        assert router.sessions() == n
        rss["full"] = router.rss_mib()
        full_latency = asyncio.run(anonymous_latency(port, 100))
        router.set_ttl(1.0)
        wait(lambda: router.sessions() == 0, "the bindings to expire", 3 * EXPIRY_SWEEP_SECONDS)
        rss["expired"] = router.rss_mib()
        router.set_ttl(DEFAULT_TTL_SECONDS)
        time.sleep(1.0)  # the file is re-read every 0.2 s; the new TTL must be in place
        router.bind("r", n)
        assert router.sessions() == n
        rss["refilled"] = router.rss_mib()

    mib = 1024 * 1024
    per_real = (rss["real"] - rss["empty"]) * mib / real
    per_session = (rss["full"] - rss["empty"]) * mib / n
    print(f"router RSS (VmRSS), one run; {real:,} sessions opened by real calls "
          f"({real_rate:,.0f} new sessions/s, {CONNECTIONS} connections, calls not answered "
          f"200: {failed}), the rest bound in-process")  # fmt: skip
    print(f"  started, no call yet               {rss['started']:7.1f} MiB")
    print(f"  empty table, after warm-up         {rss['empty']:7.1f} MiB  (baseline)")
    print(f"  {real:>7,} sessions (real calls)     {rss['real']:7.1f} MiB  "
          f"+{rss['real'] - rss['empty']:.1f} MiB, {per_real:,.0f} bytes/session")  # fmt: skip
    print(f"  {n:>7,} sessions                   {rss['full']:7.1f} MiB  "
          f"+{rss['full'] - rss['empty']:.1f} MiB, {per_session:,.0f} bytes/session")  # fmt: skip
    print(f"  all expired (table empty)          {rss['expired']:7.1f} MiB")
    print(f"  {n:>7,} new sessions again         {rss['refilled']:7.1f} MiB  "
          f"{rss['refilled'] - rss['full']:+.1f} MiB against the first fill")  # fmt: skip
    print("anonymous call, one at a time (ms): "
          f"empty table p50 {empty_latency[0]:.3f} p99 {empty_latency[1]:.3f}; "
          f"{n:,} sessions p50 {full_latency[0]:.3f} p99 {full_latency[1]:.3f}")  # fmt: skip
    bound = real_rate * DEFAULT_TTL_SECONDS
    print(f"bound: no hard cap. Idle TTL {DEFAULT_TTL_SECONDS:.0f} s x {real_rate:,.0f} new "
          f"sessions/s = {bound:,.0f} bindings, about {bound * per_session / mib:,.0f} MiB "
          "over the baseline")  # fmt: skip


if __name__ == "__main__":
    main()

"""The router's memory with 100,000 sessions in its table, beside the empty router.

Real calls, not an in-process table: the router process serves one call per new
session (``POST /v1/pools/bench/sessions/m{n}/execute``) from a client with 32
kept-alive connections. The worker is router_overhead's minimal one: it holds
no sessions, so the router's look-up of each new session on the workers is
cheap and the table fills with bindings only. The router is pinned to CPU 0,
the worker and the client to CPU 1, as in router_overhead.

The router's resident memory (VmRSS) is read, in one run:

* empty: ready, after a warm-up of anonymous calls (connections and caches in
  place, the session table still empty): the baseline;
* full: once the router's own count of sessions (``GET /v1/pools/bench``) says
  the table holds them all;
* expired: after the bindings' idle TTL is lowered in the static file (the
  router re-reads it) and the router's expiry sweep (every 10 s) empties it;
* refilled: with as many new sessions again, which shows whether the freed
  memory is reused or the process keeps growing.

The table has no hard cap: it is bounded only by the idle TTL (300 s by
default) times the rate at which new sessions arrive. Printed last: that bound
at the fill rate measured here.

    .venv/bin/python -m benchmarks.router_memory [--sessions 100000]
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.router_overhead import BIN, POOL, Target, free_port, send_call, wait_port

DEFAULT_TTL_SECONDS = 300.0  # SessionSettings.idle_ttl_seconds' default
EXPIRY_SWEEP_SECONDS = 10.0  # PoolRegistry.expire_sessions' interval
CONNECTIONS = 32


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

    def set_ttl(self, ttl: float) -> None:
        write_pools(self.pools_file, self.worker_url, ttl)


def write_pools(path: Path, worker_url: str, ttl: float) -> None:
    pools = {POOL: {"urls": [worker_url], "sessions": {"idleTtlSeconds": ttl}}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pools": pools}))
    tmp.replace(path)  # atomic: the router never reads half a file


@contextmanager
def processes(tmp: Path) -> Iterator[Router]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        worker_port, router_port = free_port(), free_port()
        code = f"from benchmarks.router_overhead import run_worker; run_worker({worker_port})"
        procs.append(subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", code]))
        worker_url = f"http://127.0.0.1:{worker_port}"
        pools_file = tmp / "pools.json"
        write_pools(pools_file, worker_url, DEFAULT_TTL_SECONDS)
        procs.append(
            subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "0",
                    str(BIN / "bridgepool-router"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(router_port),
                    "--static-file",
                    str(pools_file),
                    "--static-reload-seconds",
                    "0.2",
                    "--log-level",
                    "WARNING",
                ],
            )
        )
        # taskset execs the router: its pid is the router's
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


def wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


async def drive(port: int, sessions: list[str], sticky: bool = True) -> int:
    """One call per id in ``sessions`` over ``CONNECTIONS`` connections; returns how
    many were not answered 200."""
    target = Target("router", port, sticky_path=sticky)
    todo = iter(sessions)
    failed = 0

    async def client() -> None:
        nonlocal failed
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for session in todo:
            if await send_call(conns, port, target.request(session)) != 200:
                failed += 1
        for _, writer in conns:
            writer.close()

    await asyncio.gather(*(client() for _ in range(CONNECTIONS)))
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000, help="sessions to open")
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    n = args.sessions
    with tempfile.TemporaryDirectory() as tmpdir, processes(Path(tmpdir)) as router:
        port = router.port
        started = router.rss_mib()
        # Warm-up: anonymous calls (no session) through every connection.
        failed = asyncio.run(drive(port, [f"w{i}" for i in range(5000)], sticky=False))
        assert router.sessions() == 0
        empty = router.rss_mib()
        t0 = time.perf_counter()
        failed += asyncio.run(drive(port, [f"m{i}" for i in range(n)]))
        fill_seconds = time.perf_counter() - t0
        wait(lambda: router.sessions() == n, f"{n} sessions in the table")
        full = router.rss_mib()
        router.set_ttl(1.0)
        wait(lambda: router.sessions() == 0, "the bindings to expire", 3 * EXPIRY_SWEEP_SECONDS)
        expired = router.rss_mib()
        router.set_ttl(DEFAULT_TTL_SECONDS)
        time.sleep(0.5)  # the static file is re-read every 0.2 s
        failed += asyncio.run(drive(port, [f"r{i}" for i in range(n)]))
        wait(lambda: router.sessions() == n, f"{n} sessions in the table again")
        refilled = router.rss_mib()

    per_session = (full - empty) * 1024 * 1024 / n
    rate = n / fill_seconds
    print(f"router RSS, {n:,} sessions opened by real calls ({rate:,.0f} new sessions/s, "
          f"{CONNECTIONS} connections; calls not answered 200: {failed})")  # fmt: skip
    print(f"  started (ready, no call yet)     {started:8.1f} MiB")
    print(f"  empty table (after warm-up)      {empty:8.1f} MiB   baseline")
    print(f"  {n:,} sessions in the table   {full:8.1f} MiB   +{full - empty:.1f} MiB, "
          f"{per_session:,.0f} bytes/session")  # fmt: skip
    print(f"  after they expired (table empty) {expired:8.1f} MiB")
    print(f"  {n:,} new sessions again      {refilled:8.1f} MiB   +{refilled - full:.1f} MiB "
          "over the first fill")  # fmt: skip
    bound = rate * DEFAULT_TTL_SECONDS
    print(f"bound: no hard cap; idle TTL {DEFAULT_TTL_SECONDS:.0f} s x {rate:,.0f} new sessions/s "
          f"= {bound:,.0f} bindings, about {bound * per_session / 2**20:,.0f} MiB over the "
          "baseline")  # fmt: skip


if __name__ == "__main__":
    main()

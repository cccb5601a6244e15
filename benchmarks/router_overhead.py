"""What does the router add to a call? Same load, four paths, one run:

* direct to the worker (``POST /v1/execute``): the baseline;
* through the BridgePool router (``POST /v1/pools/bench/sessions/{id}/execute``);
* through a bare aiohttp forwarder (``benchmarks/forwarder.py``: the router's own
  stack, aiohttp server, one ClientSession and uvloop, with no routing logic);
* through HAProxy, sticky on the ``X-BridgePool-Session`` header (consistent hash).

Latency: an open-loop load at a fixed rate (default 1,000 calls/s): every call
has a scheduled send time on a fixed timetable and its latency is measured from
that time, so a slow response delays no measurement (no coordinated omission).
Printed: p50/p99/p99.9 per path and the percentiles added over direct.

Throughput: ``wrk`` (C, with a Lua script for the session paths) drives each
path closed-loop; printed: calls/s. A Python load generator could not saturate
the router on this machine, hence wrk.

Last, the ratios router/forwarder and router/HAProxy, for throughput and for the
added p50/p99/p99.9 (an added percentile under 1 µs counts as 1 µs).

The worker is a minimal asyncio server that speaks the worker protocol (fixed
answers), so the measured cost is the proxy's, not the handler's. The router and
HAProxy (and the forwarder) are pinned to CPU 0 (``taskset``), the worker, the
load generator and wrk to CPU 1. Loopback only; runtime about two minutes.

    .venv/bin/python -m benchmarks.router_overhead [--rate 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stats import percentile

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
SESSIONS = 64
POOL = "bench"
PERCENTILES = ("50", "99", "99.9")

# -- a minimal worker ------------------------------------------------------------------

READYZ = json.dumps(
    {
        "worker": "bench",
        "ready": True,
        "state": "ready",
        "capacity": 1024,
        "in_flight": 0,
        "accepting_sessions": True,
    }
).encode()
SESSIONS_BODY = json.dumps({"worker": "bench", "sessions": []}).encode()
RESULT = b'{"id": null, "success": true, "result": {"pong": true}, "error": null}'


def _response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class _WorkerProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            match = re.search(r"(?i)content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(self.buf) < end + 4 + length:
                return
            self.buf = self.buf[end + 4 + length :]
            path = head.split(" ", 2)[1]
            if path == "/readyz":
                body = READYZ
            elif path.startswith("/v1/sessions"):
                body = SESSIONS_BODY
            else:
                body = RESULT
            self.transport.write(_response(body))


def run_worker(port: int) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_WorkerProtocol, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# -- a lean open-loop client ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    sticky_path: bool  # router: session in the path; others: POST /v1/execute

    def request(self, session: str) -> bytes:
        if self.sticky_path:
            path = f"/v1/pools/{POOL}/sessions/{session}/execute"
            body = b'{"command": "ping", "args": {}}'
        else:
            path = "/v1/execute"
            body = json.dumps({"command": "ping", "args": {}, "session_id": session}).encode()
        return (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-BridgePool-Session: {session}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body


async def send_call(
    pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], port: int, payload: bytes
) -> int:
    """Send one request on a kept-alive connection from ``pool`` (or a new one) and
    read its answer; returns the HTTP status."""
    if pool:
        reader, writer = pool.pop()
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    await reader.readexactly(int(match.group(1)) if match else 0)
    pool.append((reader, writer))
    return int(head[9:12])


async def open_loop(target: Target, rate: float, seconds: float) -> tuple[list[float], int]:
    """Send ``rate`` calls/s for ``seconds``; latency of each from its scheduled time."""
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    payloads = [target.request(f"s{i}") for i in range(SESSIONS)]
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    interval = 1.0 / rate
    start = time.perf_counter() + 0.05

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        try:
            status = await send_call(conns, target.port, payloads[i % SESSIONS])
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
            return
        if status != 200:
            errors += 1
        latencies.append(time.perf_counter() - scheduled)

    tasks = []
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    for _, writer in conns:
        writer.close()
    return latencies, errors


# -- wrk ----------------------------------------------------------------------------------

WRK_LUA = """
local n = 0
local sticky = {sticky}
request = function()
  n = n + 1
  local s = "s" .. (n % {sessions})
  if sticky then
    return wrk.format("POST", "/v1/pools/{pool}/sessions/" .. s .. "/execute",
      {{["Content-Type"] = "application/json"}}, '{{"command": "ping", "args": {{}}}}')
  end
  return wrk.format("POST", "/v1/execute",
    {{["Content-Type"] = "application/json", ["X-BridgePool-Session"] = s}},
    '{{"command": "ping", "args": {{}}, "session_id": "' .. s .. '"}}')
end
"""


def wrk_throughput(target: Target, seconds: float, tmp: Path) -> tuple[float, str]:
    script = tmp / f"{target.name}.lua"
    script.write_text(
        WRK_LUA.format(
            sticky="true" if target.sticky_path else "false", sessions=SESSIONS, pool=POOL
        )
    )
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{round(seconds)}s", "-s", str(script),
         f"http://127.0.0.1:{target.port}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    return rps, (non2xx.group(1) if non2xx else "0")


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


HAPROXY_CFG = """
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend bench
    bind 127.0.0.1:{port}
    default_backend workers
backend workers
    balance hdr(X-BridgePool-Session)
    hash-type consistent
    http-reuse always
{servers}
"""


@contextmanager
def processes(tmp: Path, workers: int) -> Iterator[dict[str, int]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        worker_ports = [free_port() for _ in range(workers)]
        for port in worker_ports:
            code = f"from benchmarks.router_overhead import run_worker; run_worker({port})"
            procs.append(subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", code]))
        router_port, forwarder_port, haproxy_port = free_port(), free_port(), free_port()
        urls = ",".join(f"http://127.0.0.1:{p}" for p in worker_ports)
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
                    "--static",
                    f"{POOL}={urls}",
                    "--log-level",
                    "WARNING",
                ],
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "0",
                    sys.executable,
                    "-m",
                    "benchmarks.forwarder",
                    "--port",
                    str(forwarder_port),
                    "--upstream",
                    f"http://127.0.0.1:{worker_ports[0]}",
                ],
                cwd=REPO,
            )
        )
        servers = "\n".join(
            f"    server w{i} 127.0.0.1:{p} maxconn 1024" for i, p in enumerate(worker_ports)
        )
        cfg = tmp / "haproxy.cfg"
        cfg.write_text(HAPROXY_CFG.format(port=haproxy_port, servers=servers))
        procs.append(
            subprocess.Popen(
                ["taskset", "-c", "0", "haproxy", "-db", "-f", str(cfg)],
                stdout=subprocess.DEVNULL,
            )
        )
        for port in [*worker_ports, router_port, forwarder_port, haproxy_port]:
            wait_port(port)
        time.sleep(0.5)  # the router's first health checks
        yield {
            "direct": worker_ports[0],
            "router": router_port,
            "forwarder": forwarder_port,
            "haproxy": haproxy_port,
        }
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="calls/s of the latency run")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    args = parser.parse_args()
    if not shutil.which("haproxy") or not shutil.which("wrk"):
        sys.exit("needs haproxy and wrk: apt-get install -y haproxy wrk")
    os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory() as tmpdir, processes(Path(tmpdir), workers=1) as ports:
        targets = [
            Target("direct", ports["direct"], sticky_path=False),
            Target("router", ports["router"], sticky_path=True),
            Target("forwarder", ports["forwarder"], sticky_path=False),
            Target("haproxy", ports["haproxy"], sticky_path=False),
        ]
        print(f"latency: open loop, {args.rate:.0f} calls/s for {args.seconds:.0f}s per path, "
              f"{SESSIONS} sessions; ms from the scheduled send time")  # fmt: skip
        stats: dict[str, dict[str, float]] = {}
        for target in targets:
            asyncio.run(open_loop(target, args.rate, 1.0))  # warm-up (connections, sessions)
            lat, errors = asyncio.run(open_loop(target, args.rate, args.seconds))
            stats[target.name] = {p: percentile(lat, float(p) / 100) * 1000 for p in PERCENTILES}
            s = stats[target.name]
            print(f"  {target.name:9s} p50 {s['50']:7.3f}  p99 {s['99']:7.3f}  "
                  f"p99.9 {s['99.9']:7.3f}  errors {errors}")  # fmt: skip
        print("added over direct (difference of percentiles, ms):")
        added: dict[str, dict[str, float]] = {}
        for name in ("router", "forwarder", "haproxy"):
            d = added[name] = {p: stats[name][p] - stats["direct"][p] for p in PERCENTILES}
            print(f"  {name:9s} p50 {d['50']:7.3f}  p99 {d['99']:7.3f}  p99.9 {d['99.9']:7.3f}")
        print(f"throughput: wrk, 1 thread, 32 connections, {args.seconds:.0f}s per path")
        rps: dict[str, float] = {}
        for target in targets:
            rps[target.name], non2xx = wrk_throughput(target, args.seconds, Path(tmpdir))
            print(f"  {target.name:9s} {rps[target.name]:9.0f} calls/s  (non-2xx: {non2xx})")
        print("router / baseline (throughput: higher is better; added latency: lower is better):")
        print(
            f"  {'':9s} {'calls/s':>8s} {'added p50':>10s} {'added p99':>10s} {'added p99.9':>12s}"
        )
        for base in ("forwarder", "haproxy"):
            x = {p: max(added["router"][p], 1e-3) / max(added[base][p], 1e-3) for p in PERCENTILES}
            print(
                f"  {base:9s} {rps['router'] / rps[base]:7.2f}x {x['50']:9.2f}x "
                f"{x['99']:9.2f}x {x['99.9']:11.2f}x"
            )
        print(
            "targets (reported, not asserted): router >= 1.5x the forwarder's calls/s; "
            f"router-added p99 <= 1 ms and p99.9 <= 5 ms at {args.rate:.0f} calls/s"
        )


if __name__ == "__main__":
    main()
